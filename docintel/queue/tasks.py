"""Celery tasks: IDs in, one stage, commit, enqueue the next. No logic lives here."""

from __future__ import annotations

import uuid
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from docintel.models import Document, Page
from docintel.pipeline import finalize, ocr, page, split, sweeper
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.errors import DocumentError, ErrorCode
from docintel.pipeline.page_results import fail_page
from docintel.queue.app import app
from docintel.queue.base import StageTask, run_stage


def _as_document_error(error: BaseException) -> DocumentError:
    if isinstance(error, SoftTimeLimitExceeded):
        return DocumentError(ErrorCode.TIMEOUT, "the stage ran past its time limit")
    detail = f"{type(error).__name__}: {error}"[:500]
    return DocumentError(ErrorCode.INTERNAL, f"unexpected error ({detail})")


def _fail_document(
    ctx: StageContext, error: BaseException, args: tuple[Any, ...]
) -> list[FollowUp]:
    doc = ctx.session.get(Document, uuid.UUID(args[0]))
    if doc is not None:
        split.fail_document(doc, _as_document_error(error))
    return []


def _fail_page(ctx: StageContext, error: BaseException, args: tuple[Any, ...]) -> list[FollowUp]:
    row = ctx.session.get(Page, args[0])
    if row is None:
        return []
    fail_page(row, _as_document_error(error))
    return [FollowUp("docintel.finalize", (str(row.document_id),))]


@app.task(base=StageTask, name="docintel.split")
def split_task(document_id: str) -> None:
    run_stage(split.split_document, document_id, on_failure=_fail_document)


@app.task(base=StageTask, name="docintel.process_page")
def process_page_task(page_id: int) -> None:
    run_stage(page.process_page, page_id, on_failure=_fail_page)


@app.task(base=StageTask, name="docintel.ocr_batch")
def ocr_batch_task() -> None:
    # Claimed pages whose batch crashed are freed by the sweeper and retried.
    run_stage(ocr.ocr_batch)


@app.task(base=StageTask, name="docintel.finalize")
def finalize_task(document_id: str) -> None:
    run_stage(finalize.finalize_document, document_id)


@app.task(base=StageTask, name="docintel.sweep")
def sweep_task() -> None:
    run_stage(sweeper.sweep)
