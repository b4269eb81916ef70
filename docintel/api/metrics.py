"""Prometheus metrics, read from the database at each scrape.

Work is done by many worker processes on many hosts; the database is the one
place that knows all of it, so the counts come from there, not from
in-process counters that every restart would reset. Each scrape is a handful
of grouped counts over indexed columns.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.settings import Settings

# Which queue a page waiting in each status is sent to.
_QUEUE_OF = {PageStatus.PENDING: "cpu", PageStatus.OCR: "ocr", PageStatus.EXTRACT: "extract"}


class DatabaseCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "docintel_pages_waiting", "Pages waiting for a stage, by stage", labels=["stage"]
        )
        documents = GaugeMetricFamily(
            "docintel_documents", "Documents by status", labels=["status"]
        )
        processed = CounterMetricFamily(
            "docintel_pages_processed",
            "Pages done, by the document's source and where the text came from",
            labels=["source", "text_source"],
        )
        failures = CounterMetricFamily(
            "docintel_failures",
            "Failed documents and pages by error code",
            labels=["kind", "code"],
        )
        with session_scope(self.settings.database_url) as session:
            counts = dict(
                session.execute(
                    select(Page.status, func.count())
                    .where(Page.status.in_(tuple(_QUEUE_OF)))
                    .group_by(Page.status)
                ).all()
            )
            for status, stage in _QUEUE_OF.items():
                waiting.add_metric([stage], counts.get(status, 0))
            for doc_status, count in session.execute(
                select(Document.status, func.count()).group_by(Document.status)
            ):
                documents.add_metric([str(doc_status)], count)
            for source, text_source, count in session.execute(
                select(Document.source, Page.text_source, func.count())
                .join(Page, Page.document_id == Document.id)
                .where(Page.status == PageStatus.DONE)
                .group_by(Document.source, Page.text_source)
            ):
                processed.add_metric([source, str(text_source or "none")], count)
            for code, count in session.execute(
                select(Page.error_code, func.count())
                .where(Page.status == PageStatus.FAILED)
                .group_by(Page.error_code)
            ):
                failures.add_metric(["page", code or "unknown"], count)
            for code, count in session.execute(
                select(Document.error_code, func.count())
                .where(Document.status == DocumentStatus.FAILED)
                .group_by(Document.error_code)
            ):
                failures.add_metric(["document", code or "unknown"], count)
        yield from (waiting, documents, processed, failures)
