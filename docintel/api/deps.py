"""What every route may ask for: the settings, a database session, an authorized caller."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi import Path as PathParam
from sqlalchemy.orm import Session

from docintel.api import keys
from docintel.api.problems import Problem
from docintel.db import session_scope
from docintel.service import Accepted, QueueUnavailable, start
from docintel.settings import Settings

log = logging.getLogger(__name__)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(_settings)]


def _session(settings: AppSettings) -> Iterator[Session]:
    with session_scope(settings.database_url) as session:
        yield session


Db = Annotated[Session, Depends(_session)]

# Pages are numbered from 1; the bound keeps a huge number a 422, not a database error.
PageNumber = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def keys_required(settings: Settings) -> bool:
    if settings.api_keys_required is not None:
        return settings.api_keys_required
    return not settings.embedded


def authorized(
    settings: AppSettings, authorization: Annotated[str | None, Header()] = None
) -> None:
    if not keys_required(settings):
        return
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Problem(401, "unauthorized", "send an API key: Authorization: Bearer <key>")
    with session_scope(settings.database_url) as session:
        if not keys.verify_key(session, key.strip()):
            raise Problem(401, "unauthorized", "unknown or revoked API key")


class Launcher:
    """Starts a stored document's work: here on one background thread (embedded mode,
    where this process is the only worker), else by sending it to the workers.

    Embedded, it also takes the workers' turn at the sweep every
    ``DOCINTEL_SWEEP_INTERVAL_S``: work an earlier run left unfinished resumes, and
    webhooks whose receiver failed are tried again.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docintel-embedded")
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        if settings.embedded:
            self._sweeper = threading.Thread(
                target=self._sweep_now_and_then, name="docintel-sweep", daemon=True
            )
            self._sweeper.start()

    def _sweep_now_and_then(self) -> None:
        from docintel.queue.maintenance import sweep_turn

        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                sweep_turn(force=False, settings=self.settings)
            except Exception:  # the next turn tries again; a sweep must never end the API
                log.warning("the embedded sweep failed", exc_info=True)

    def launch(self, accepted: Accepted) -> None:
        if self.settings.embedded:
            self._background.submit(start, self.settings, accepted)
            return
        # A broker that is down: the document is stored with its message kept, and
        # the sweep sends it once the broker is back.
        with contextlib.suppress(QueueUnavailable):
            start(self.settings, accepted)

    def close(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=30)
        self._background.shutdown(wait=True, cancel_futures=False)


def _launcher(request: Request) -> Launcher:
    launcher: Launcher = request.app.state.launcher
    return launcher


AppLauncher = Annotated[Launcher, Depends(_launcher)]
