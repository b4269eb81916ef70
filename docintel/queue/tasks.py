"""Celery tasks: IDs in, one stage, commit, enqueue the next. No logic lives here."""

from __future__ import annotations

import uuid
from typing import Any

from docintel.models import Document
from docintel.pipeline import extract, finalize, ocr, page, split
from docintel.pipeline.context import FollowUp, StageContext
from docintel.queue.app import app
from docintel.queue.base import StageTask, as_document_error, run_stage


def _fail_document(
    ctx: StageContext, error: BaseException, args: tuple[Any, ...]
) -> list[FollowUp]:
    doc = ctx.session.get(Document, uuid.UUID(args[0]), with_for_update=True)
    if doc is not None:
        split.fail_document(doc, as_document_error(error))
    return []


@app.task(base=StageTask, name="docintel.split")
def split_task(document_id: str) -> None:
    run_stage(split.split_document, document_id, on_failure=_fail_document)


@app.task(base=StageTask, name="docintel.process_page")
def process_page_task(page_id: int) -> None:
    # A failure fails the page through its lease (run_stage), never unfenced.
    run_stage(page.process_page, page_id)


@app.task(base=StageTask, name="docintel.ocr_batch")
def ocr_batch_task() -> None:
    run_stage(ocr.ocr_batch)


@app.task(base=StageTask, name="docintel.extract_batch")
def extract_batch_task() -> None:
    # A failure leaves the pages done with their regions failed (page_results).
    run_stage(extract.extract_batch)


@app.task(base=StageTask, name="docintel.finalize")
def finalize_task(document_id: str) -> None:
    run_stage(finalize.finalize_document, document_id)


@app.task(base=StageTask, name="docintel.sweep")
def sweep_task() -> None:
    # Kept for messages sent by older versions; the sweep now runs in every worker.
    from docintel.queue.maintenance import sweep_turn

    sweep_turn(force=False)
