"""Prometheus metrics, read from the database at each scrape.

Work is done by many worker processes on many hosts; the database is the one
place that knows all of it, so the counts come from there, not from
in-process counters that every restart would reset. Each scrape is a handful
of grouped counts over indexed columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import groupby

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus, StageLatency
from docintel.pipeline.latency import BUCKETS
from docintel.queue.depth import queue_lengths
from docintel.settings import Settings

log = logging.getLogger(__name__)

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
            "Pages done, by the document's source, where the text came from and what read it",
            labels=["source", "text_source", "engine"],
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
            for source, text_source, engine, count in session.execute(
                select(Document.source, Page.text_source, Page.engine, func.count())
                .join(Page, Page.document_id == Document.id)
                .where(Page.status == PageStatus.DONE)
                .group_by(Document.source, Page.text_source, Page.engine)
            ):
                labels = [source, str(text_source or "none"), engine or "none"]
                processed.add_metric(labels, count)
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
            latency = _stage_latency(session)
        yield from (waiting, documents, processed, failures, latency)
        if not self.settings.embedded:
            yield from _broker_queues(self.settings)


def _stage_latency(session: Session) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(
        "docintel_stage_seconds", "Seconds a page spent in each stage", labels=["stage"]
    )
    rows = session.execute(
        select(
            StageLatency.stage, StageLatency.le, StageLatency.count, StageLatency.sum_seconds
        ).order_by(StageLatency.stage, StageLatency.le)
    ).all()
    for stage, group in groupby(rows, key=lambda row: row[0]):
        buckets: dict[float, int] = {}
        total = 0.0
        for _, le, count, seconds in group:
            buckets[le] = count
            total += seconds
        cumulative, running = [], 0
        for le in BUCKETS:  # every bucket, including empty ones, as Prometheus expects
            running += buckets.get(le, 0)
            cumulative.append((floatToGoString(le), running))
        histogram.add_metric([stage], cumulative, sum_value=total)
    return histogram


def _broker_queues(settings: Settings) -> Iterator[Metric]:
    """Messages waiting in each broker queue; ``docintel_broker_up`` 0 when unreachable."""
    up = GaugeMetricFamily("docintel_broker_up", "Whether the broker answered this scrape")
    try:
        lengths = queue_lengths(settings)
    except Exception as error:  # a scrape must answer even with the broker away
        log.warning("metrics: cannot read the broker's queues: %s", error)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    queued = GaugeMetricFamily(
        "docintel_queue_messages", "Messages waiting in the broker, by queue", labels=["queue"]
    )
    for queue, length in lengths.items():
        queued.add_metric([queue], length)
    yield from (up, queued)
