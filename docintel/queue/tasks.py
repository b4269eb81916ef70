"""Celery tasks: IDs in, one stage, commit, enqueue the next. No logic lives here."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task

from docintel.models import Document
from docintel.pipeline import extract, finalize, ocr, page, split
from docintel.pipeline.context import FollowUp, StageContext
from docintel.queue.app import app
from docintel.queue.base import TRANSIENT_RETRIES, StageTask, as_document_error, run_stage
from docintel.settings import get_settings
from docintel.webhooks import delivery


def _fail_document(
    ctx: StageContext, error: BaseException, args: tuple[Any, ...]
) -> list[FollowUp]:
    doc = ctx.session.get(Document, uuid.UUID(args[0]), with_for_update=True)
    if doc is None:
        return []
    return split.fail_document(ctx, doc, as_document_error(error))


@app.task(base=StageTask, name="docintel.split")
def split_task(document_id: str) -> None:
    run_stage(split.split_document, document_id, on_failure=_fail_document)


@app.task(base=StageTask, name="docintel.process_page")
def process_page_task(page_id: int) -> None:
    # A failure fails the page through its lease (run_stage), never unfenced.
    run_stage(page.process_page, page_id)


# A wake-up naming its queue (none in messages of older versions: the configured one's).
@app.task(base=StageTask, name="docintel.ocr_batch")
def ocr_batch_task(queue: str | None = None) -> None:
    run_stage(ocr.ocr_batch, queue)


@app.task(base=StageTask, name="docintel.extract_batch")
def extract_batch_task(queue: str | None = None) -> None:
    # A failure leaves the pages done with their regions failed (page_results).
    run_stage(extract.extract_batch, queue)


@app.task(base=StageTask, name="docintel.finalize")
def finalize_task(document_id: str) -> None:
    run_stage(finalize.finalize_document, document_id)


@app.task(base=StageTask, name="docintel.sweep")
def sweep_task() -> None:
    # Kept for messages sent by older versions; the sweep now runs in every worker.
    from docintel.queue.maintenance import sweep_turn

    sweep_turn(force=False)


@app.task(name="docintel.scan_sources", ignore_result=True)
def scan_sources_task() -> None:
    # Sent by beat. Overlapping scans (two beats, a slow scan) import each file once.
    from docintel.ingestion.scan import scan_all

    scan_all(get_settings())


class WebhookTask(StageTask):
    # The database or broker hiccuped: retried as a stage is (StageTask's backoff).
    retry_kwargs = {"max_retries": TRANSIENT_RETRIES}  # noqa: RUF012 -- read by Celery
    # The receiver's failures: attempts are counted on the delivery row
    # (DOCINTEL_WEBHOOK_MAX_ATTEMPTS), across this task's retries and the sweep's re-sends.
    max_retries = None


@app.task(bind=True, base=WebhookTask, name="docintel.deliver_webhook")
def deliver_webhook_task(self: Task, delivery_id: str) -> None:
    retry_in = delivery.attempt(get_settings(), delivery_id)
    # Embedded mode has no broker to hold a delayed message, and an eager retry would
    # block the pipeline: the row keeps its next attempt time and the sweep sends it.
    if retry_in is not None and not self.app.conf.task_always_eager:
        raise self.retry(countdown=retry_in)
