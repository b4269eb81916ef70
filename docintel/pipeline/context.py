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

from docintel.engines.base import EngineConfig, frozen_options
from docintel.models import PageStatus
from docintel.pipeline.leases import Lease, claim, claim_batch, hold_here
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

    def claim_batch(self, status: PageStatus, limit: int) -> Lease | None:
        return self._hold(claim_batch(self.session, status, limit, **self._claim_terms()))

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


def ocr_engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        name=settings.ocr_engine,
        model=settings.ocr_model,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.ocr_batch_size,
        threads=settings.ocr_threads,
        options=frozen_options(settings.ocr_options),
    )
