"""Readiness checks: can this process reach what it needs right now?"""

from __future__ import annotations

from sqlalchemy import text

from docintel.db import session_scope
from docintel.settings import Settings


def check_database(settings: Settings) -> str:
    try:
        with session_scope(settings.database_url) as s:
            s.execute(text("SELECT 1"))
    except Exception as error:
        return f"failed: {type(error).__name__}"
    return "ok"


def check_storage(settings: Settings) -> str:
    from docintel.pipeline.context import store_for

    try:
        store_for(settings).exists("healthcheck/none")
    except Exception as error:
        return f"failed: {type(error).__name__}"
    return "ok"


def check_broker(settings: Settings) -> str:
    from kombu import Connection

    try:
        with Connection(settings.broker_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        return f"failed: {type(error).__name__}"
    return "ok"
