"""Which deliveries a finished run creates, and what they say.

``announce`` is called by every transition of a document to a final status
(finalize, a failed split or ingest, cancel), under the document's row lock
and in the transaction that makes the transition: the deliveries commit with
the status or not at all, and a transition happens once, so each finished run
(a reprocess is a new run) is announced exactly once per target.

Events are the three of the issue: ``done``, ``partial`` and ``failed``. A
cancelled document is announced as ``failed`` with status ``cancelled`` and
error code ``cancelled``: whoever waits for its result learns that none comes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from docintel.models import Document, DocumentStatus, PageStatus
from docintel.models.webhooks import WebhookDelivery, WebhookStatus
from docintel.pipeline.context import FollowUp
from docintel.pipeline.leases import db_now
from docintel.pipeline.progress import page_counts
from docintel.settings import Settings

DELIVER_TASK = "docintel.deliver_webhook"

EVENT_OF_STATUS = {
    DocumentStatus.DONE: "done",
    DocumentStatus.PARTIAL: "partial",
    DocumentStatus.FAILED: "failed",
    DocumentStatus.CANCELLED: "failed",
}


def announce(session: Session, settings: Settings, doc: Document) -> list[FollowUp]:
    """Create the deliveries for ``doc``'s final status; the messages that send them."""
    event = EVENT_OF_STATUS.get(doc.status)
    urls = targets_of(settings, doc)
    if event is None or not urls:
        return []
    now = db_now(session)  # the clock the delivery's claim compares against
    body = payload(session, doc, event, now)
    deliveries = [
        WebhookDelivery(
            id=uuid.uuid4(),
            document_id=doc.id,
            url=url,
            event=event,
            payload=body,
            status=WebhookStatus.PENDING.value,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        for url in urls
    ]
    session.add_all(deliveries)
    return [FollowUp(DELIVER_TASK, (str(d.id),)) for d in deliveries]


def targets_of(settings: Settings, doc: Document) -> list[str]:
    """The global webhooks, then the document's own; each URL once."""
    urls = list(settings.webhook_urls)
    own = (doc.options or {}).get("webhook_url")
    if isinstance(own, str) and own:
        urls.append(own)
    return list(dict.fromkeys(urls))


def payload(session: Session, doc: Document, event: str, at: datetime) -> dict[str, Any]:
    counts = page_counts(session, doc.id)
    error = None
    if doc.error_code:
        error = {"code": doc.error_code, "message": doc.error_message}
    link = f"/v1/documents/{doc.id}"
    return {
        "event": event,
        "created_at": at.isoformat(),
        "document": {
            "id": str(doc.id),
            "filename": doc.filename,
            "status": doc.status.value,
            "source": doc.source,
            "page_count": doc.page_count,
            "pages_done": counts[PageStatus.DONE],
            "pages_failed": counts[PageStatus.FAILED],
            "error": error,
        },
        "links": {"document": link, "markdown": f"{link}/markdown", "job": f"{link}/job"},
    }


def due_deliveries(session: Session, due_before: datetime) -> list[FollowUp]:
    """Messages for pending deliveries whose attempt was due before ``due_before``.

    For the sweep: retries in embedded mode (no broker to hold a delayed
    message), and deliveries whose message or worker was lost.
    """
    ids = session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == WebhookStatus.PENDING.value,
            WebhookDelivery.next_attempt_at <= due_before,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1000)
    ).all()
    return [FollowUp(DELIVER_TASK, (str(delivery_id),)) for delivery_id in ids]
