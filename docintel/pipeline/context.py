"""What a stage function works with: one session, the settings, the blob store.

Stages return the follow-up work as ``FollowUp`` values instead of enqueueing
it themselves; the task layer sends them only after the transaction commits.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from docintel.models import PageStatus
from docintel.pipeline.leases import Lease, QueueFilter, claim, claim_batch, hold_here
from docintel.pipeline.routing import batch_size, default_queue
from docintel.settings import Settings
from docintel.storage import BlobStore, open_store


@dataclass(frozen=True, slots=True)
class FollowUp:
    task: str
    args: tuple[Any, ...] = ()
    queue: str | None = None
    priority: int | None = None  # None: the task's own (see pipeline.priority)


@dataclass(slots=True)
class StageContext:
    session: Session
    settings: Settings
    # Who claims: the Celery task id, so that its retries take their claims back.
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    # What this run holds: the task layer releases these on a transient error and
    # fails them on a permanent one, always through the fence.
    leases: list[Lease] = field(default_factory=list)
    # A Celery retry of the task (not a first delivery, nor a redelivery).
    retrying: bool = False

    @property
    def store(self) -> BlobStore:
        return store_for(self.settings)

    def claim(self, page_ids: list[int], status: PageStatus) -> Lease | None:
        return self._hold(claim(self.session, page_ids, status, **self._claim_terms()))

    def claim_batch(self, status: PageStatus, queue: str) -> Lease | None:
        """Up to a batch of the pages waiting in ``status`` on ``queue``."""
        limit = batch_size(self.settings, status, queue)
        on = self.queue_filter(status, queue)
        return self._hold(claim_batch(self.session, status, limit, on=on, **self._claim_terms()))

    def queue_filter(self, status: PageStatus, queue: str) -> QueueFilter:
        return QueueFilter(queue, unrouted=queue == default_queue(self.settings, status))

    def _claim_terms(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "lease_s": self.settings.lease_s,
            "max_attempts": self.settings.max_page_attempts,
            "retrying": self.retrying,
        }

    def _hold(self, lease: Lease | None) -> Lease | None:
        if lease is not None:
            self.leases.append(lease)
            hold_here(lease)
        return lease

    def injected_delay(self, stage: str, page: int | None = None) -> None:
        """Sleep as ``DOCINTEL_TEST_STAGE_DELAYS`` says: the crash and pause tests need
        a stage slow enough to be caught in the middle. ``"render:2"`` delays only
        page 2 (a page that hangs while its neighbours do not)."""
        delays = self.settings.test_stage_delays
        seconds = delays.get(f"{stage}:{page}", delays.get(stage))
        if seconds:
            time.sleep(seconds)


def store_for(settings: Settings) -> BlobStore:
    return _store(settings.storage_url, settings.s3_endpoint_url, settings.s3_region)


@lru_cache(maxsize=4)
def _store(url: str, endpoint: str | None, region: str | None) -> BlobStore:
    return open_store(url, s3_endpoint_url=endpoint, s3_region=region)
