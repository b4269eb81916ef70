"""The ORM models. They import nothing of Celery, the engines, storage or the API."""

from docintel.models.auth import ApiKey, IdempotencyKey
from docintel.models.base import Base
from docintel.models.coordination import ClusterState, OutboxMessage, WorkerHeartbeat
from docintel.models.documents import (
    TERMINAL_STATUSES,
    Document,
    DocumentStatus,
    Extraction,
    ExtractionStatus,
    Line,
    Page,
    PageStatus,
    TextSource,
)
from docintel.models.ingestion import Source, SourceFile
from docintel.models.jobs import Job, StageLatency
from docintel.models.webhooks import WebhookDelivery, WebhookStatus

__all__ = [
    "TERMINAL_STATUSES",
    "ApiKey",
    "Base",
    "ClusterState",
    "Document",
    "DocumentStatus",
    "Extraction",
    "ExtractionStatus",
    "IdempotencyKey",
    "Job",
    "Line",
    "OutboxMessage",
    "Page",
    "PageStatus",
    "Source",
    "SourceFile",
    "StageLatency",
    "TextSource",
    "WebhookDelivery",
    "WebhookStatus",
    "WorkerHeartbeat",
]
