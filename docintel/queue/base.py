"""The one place that owns transactions, retries and enqueue-after-commit for tasks.

A task body is ``run_stage(stage_function, *ids)``: open a session, run the
stage, commit, and only then send the follow-up tasks the stage asked for.
Transient infrastructure errors are retried with backoff and jitter; anything
else is recorded on the page or document it concerns, never retried blindly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, OperationalError

from docintel.db import session_scope
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.priority import TASK_PRIORITY
from docintel.settings import get_settings

log = logging.getLogger(__name__)

# Worth retrying: the database, broker or blob store hiccuped, not the document.
# The blob stores raise StorageUnavailable, a ConnectionError, for their outages.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    BrokerError,  # sending the follow-ups failed; the rerun sends them again
    ConnectionError,
    TimeoutError,
)

Stage = Callable[..., list[FollowUp]]
FailureHook = Callable[[StageContext, BaseException, tuple[Any, ...]], list[FollowUp]]


class StageTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 8


def run_stage(stage: Stage, *args: Any, on_failure: FailureHook | None = None) -> None:
    settings = get_settings()
    try:
        with session_scope(settings.database_url) as session:
            follow_ups = stage(StageContext(session, settings), *args)
    except TRANSIENT_ERRORS:
        raise
    except DBAPIError as error:
        if error.connection_invalidated:
            raise
        follow_ups = _record_failure(stage, error, args, on_failure)
    except (Exception, SoftTimeLimitExceeded) as error:
        follow_ups = _record_failure(stage, error, args, on_failure)
    dispatch(follow_ups)


def _record_failure(
    stage: Stage, error: BaseException, args: tuple[Any, ...], on_failure: FailureHook | None
) -> list[FollowUp]:
    log.exception("stage %s failed for %s", stage.__name__, args)
    if on_failure is None:
        return []
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        return on_failure(StageContext(session, settings), error, args)


def dispatch(follow_ups: Sequence[FollowUp]) -> None:
    from docintel.queue.tasks import app  # importing the tasks registers them

    for follow_up in follow_ups:
        options: dict[str, Any] = {"queue": follow_up.queue} if follow_up.queue else {}
        priority = follow_up.priority
        if priority is None:
            priority = TASK_PRIORITY.get(follow_up.task)
        if priority is not None:
            options["priority"] = priority
        app.tasks[follow_up.task].apply_async(args=follow_up.args, **options)
