"""One delivery attempt: claim the row, POST the signed payload, record the answer.

No transaction stays open while the receiver answers. The claim counts the
attempt and pushes ``next_attempt_at`` past the attempt's timeout, so a second
message for the same delivery (a sweep's re-send, a redelivery) finds it not
due and does nothing, and a worker killed mid-attempt leaves it due again
once that time passes. ``attempt`` returns the seconds until the next try
(exponential backoff with jitter, capped), or None when nothing is left to do.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from docintel.db import lock_row, session_scope
from docintel.errors import error_detail
from docintel.models.webhooks import WebhookDelivery, WebhookStatus
from docintel.pipeline.leases import db_now
from docintel.settings import Settings
from docintel.webhooks import signing, targets

log = logging.getLogger(__name__)

# A broker's delayed message may arrive a little before the database says it is due.
_EARLY_S = 1.0
_CLAIM_MARGIN_S = 30.0
_ERROR_CHARS = 500
_ANSWER_BYTES = 200  # of an error answer, kept for the delivery's last_error


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: uuid.UUID
    url: str
    event: str
    payload: dict[str, Any]
    attempt: int


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False  # trying again cannot help (a refused target)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt(settings: Settings, delivery_id: str) -> float | None:
    """Try ``delivery_id`` once if it is due; seconds until its next try, or None."""
    claimed = _claim(settings, uuid.UUID(delivery_id))
    if claimed is None:
        return None
    answer = _post(settings, claimed)
    return _record(settings, claimed, answer)


def backoff_s(settings: Settings, attempts: int) -> float:
    """Wait after the ``attempts``-th failure: doubling, capped, then jittered down by up
    to half, so deliveries that failed together (one receiver down) spread out."""
    ceiling = min(settings.webhook_backoff_max_s, settings.webhook_backoff_s * 2 ** (attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _claim(settings: Settings, delivery_id: uuid.UUID) -> _Claimed | None:
    with session_scope(settings.database_url) as session:
        lock_row(session, WebhookDelivery, delivery_id)  # SQLite: FOR UPDATE does nothing
        now = db_now(session)
        row = session.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == WebhookStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now + timedelta(seconds=_EARLY_S),
            )
            .with_for_update(skip_locked=True)
        )
        if row is None:
            return None  # delivered, given up, not due yet, or another worker has it
        if not settings.webhook_secret.get_secret_value():
            _give_up(row, "not sent: DOCINTEL_WEBHOOK_SECRET is not set (never unsigned)")
            return None
        if row.attempts >= settings.webhook_max_attempts:
            # Attempts cut short by killed workers count too: no endless crash loop.
            _give_up(row, row.last_error or "no answer after the last attempt")
            return None
        row.attempts += 1
        lease = settings.webhook_timeout_s * 3 + _CLAIM_MARGIN_S  # connect, write, read
        row.next_attempt_at = now + timedelta(seconds=lease)
        return _Claimed(row.id, row.url, row.event, dict(row.payload), row.attempts)


def _post(settings: Settings, claimed: _Claimed) -> _Answer:
    try:
        target = targets.resolve(claimed.url, allow_private=settings.webhook_allow_private)
    except targets.TargetRefused as error:
        return _Answer(error=f"refused: {error}", permanent=True)
    except OSError as error:  # the name does not resolve (now)
        return _Answer(error=f"cannot resolve the host: {error}")
    body = json.dumps(claimed.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": "docintel-webhooks",
        signing.EVENT_HEADER: claimed.event,
        signing.DELIVERY_HEADER: str(claimed.id),
        signing.TIMESTAMP_HEADER: str(timestamp),
        signing.SIGNATURE_HEADER: signing.sign(
            settings.webhook_secret.get_secret_value(), timestamp, body
        ),
    }
    try:
        status, excerpt = _send(settings, target, body, headers)
    except httpx.HTTPError as error:
        return _Answer(error=error_detail(error, _ERROR_CHARS))
    except Exception as error:  # whatever else: recorded on the delivery, never lost
        log.warning("webhook %s: %s", claimed.id, error, exc_info=True)
        return _Answer(error=error_detail(error, _ERROR_CHARS))
    if 200 <= status < 300:
        return _Answer(status_code=status)
    return _Answer(status_code=status, error=f"HTTP {status}: {excerpt}"[:_ERROR_CHARS])


def _send(
    settings: Settings, target: targets.Target, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    """POST and read at most a little of the answer, within one overall deadline.

    A receiver is anyone's URL: one that answers gigabytes, or drips a byte at a
    time (each read within the per-read timeout), must cost neither memory nor
    more than the deadline, which ends well inside the claim's lease.
    """
    deadline = time.monotonic() + settings.webhook_timeout_s * 2
    # No proxies from the environment and no redirects: either would send the
    # request somewhere other than the address that was checked.
    with (
        httpx.Client(
            timeout=settings.webhook_timeout_s, trust_env=False, follow_redirects=False
        ) as client,
        client.stream(
            "POST",
            target.connect_url,
            content=body,
            headers=headers,
            extensions={"sni_hostname": target.hostname},
        ) as response,
    ):
        excerpt = b""
        for chunk in response.iter_raw():
            excerpt += chunk
            if len(excerpt) >= _ANSWER_BYTES or time.monotonic() > deadline:
                break
        return response.status_code, excerpt[:_ANSWER_BYTES].decode("utf-8", "replace")


def _record(settings: Settings, claimed: _Claimed, answer: _Answer) -> float | None:
    with session_scope(settings.database_url) as session:
        row = session.get(WebhookDelivery, claimed.id, with_for_update=True)
        if row is None:
            return None  # its document was deleted meanwhile
        now = db_now(session)
        row.last_status_code = answer.status_code
        if answer.ok:
            row.status = WebhookStatus.DELIVERED.value
            row.delivered_at, row.next_attempt_at, row.last_error = now, None, None
            log.info("webhook %s delivered to %s", row.id, row.url)
            return None
        row.last_error = answer.error
        if answer.permanent or claimed.attempt >= settings.webhook_max_attempts:
            _give_up(row, answer.error or "failed")
            return None
        wait = backoff_s(settings, claimed.attempt)
        row.next_attempt_at = now + timedelta(seconds=wait)
        log.info(
            "webhook %s attempt %d to %s failed (%s); next in %.1fs",
            row.id,
            claimed.attempt,
            row.url,
            answer.error,
            wait,
        )
        return wait


def _give_up(row: WebhookDelivery, error: str) -> None:
    row.status = WebhookStatus.FAILED.value
    row.last_error = error
    row.next_attempt_at = None
    log.warning("webhook %s to %s failed for good: %s", row.id, row.url, error)
