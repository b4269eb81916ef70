"""Webhook deliveries: one row per target URL per finished run of a document.

The row is the source of truth for a delivery, not the broker message that
asks for it: attempts, the last answer and when to try next live here, so a
lost message or a killed worker delays a webhook but never loses it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from docintel.models.base import Base, JSONType, utcnow


class WebhookStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt or its next retry
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # refused target, or no 2xx after the last attempt


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    # The sweep asks for pending deliveries whose next attempt is due.
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    # Also sent as X-Docintel-Delivery: receivers deduplicate retries by it.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    # While an attempt runs this is pushed past its timeout (a lease): a worker killed
    # mid-attempt leaves the delivery due again for the sweep, not stuck.
    next_attempt_at: Mapped[datetime | None]
