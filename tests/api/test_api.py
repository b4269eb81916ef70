"""The HTTP API through FastAPI's TestClient: a real app, a real SQLite or Postgres
database, the real pipeline running the uploads (embedded mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from docintel import migrate
from docintel.api import keys
from docintel.api.app import create_app
from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf
from tests.runtime import apply_env, base_env


def _settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str = "", **extra: str
) -> Settings:
    url = database_url or f"sqlite:///{tmp_path / 'api.db'}"
    if url.startswith("sqlite"):
        migrate.upgrade(url)
    env = {**base_env(tmp_path, url), **{f"DOCINTEL_{k.upper()}": v for k, v in extra.items()}}
    return apply_env(monkeypatch, env)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    _settings(monkeypatch, tmp_path)
    with TestClient(create_app()) as test_client:
        yield test_client


def _upload(client: TestClient, path: Path, name: str | None = None, **fields: str) -> Any:
    with path.open("rb") as handle:
        return client.post(
            "/v1/documents", files={"file": (name or path.name, handle)}, data=fields
        )


def _wait_done(client: TestClient, doc_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/v1/documents/{doc_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["document"]["status"] in ("done", "failed", "partial"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"document {doc_id} not finished in {timeout}s")


def test_upload_is_processed_and_every_view_reads_it(client: TestClient, tmp_path: Path) -> None:
    pdf = make_table_pdf(tmp_path / "sales.pdf", [TableSpec(SALES, text_above=["Sales report"])])
    answer = _upload(client, pdf, options=json.dumps({"ocr_mode": "auto"}))
    assert answer.status_code == 202, answer.text
    doc_id = answer.json()["document_id"]
    assert answer.headers["location"] == f"/v1/documents/{doc_id}"
    assert answer.json()["created"] is True
    job_id = answer.json()["job_id"]
    assert answer.json()["links"]["job"] == f"/v1/jobs/{job_id}"

    body = _wait_done(client, doc_id)
    assert body["document"]["status"] == "done" and body["document"]["filename"] == "sales.pdf"
    markdown = client.get(f"/v1/documents/{doc_id}/markdown")
    assert markdown.headers["content-type"].startswith("text/plain")
    assert "| Region | Units | Revenue | Margin |" in markdown.text
    page = client.get(f"/v1/documents/{doc_id}/pages/1").json()
    assert page["number"] == 1 and "Sales report" in page["text"]
    image = client.get(f"/v1/documents/{doc_id}/pages/1/image")
    assert (
        image.headers["content-type"] == "image/png" and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    )
    (table,) = client.get(f"/v1/documents/{doc_id}/tables").json()
    assert table["page"] == 1 and table["rows"] == [list(r) for r in SALES]
    assert client.get(f"/v1/documents/{doc_id}/charts").json() == []
    job = client.get(f"/v1/documents/{doc_id}/job").json()
    assert (job["id"], job["status"], job["pages_total"], job["pages_done"]) == (
        job_id,
        "done",
        1,
        1,
    )
    assert client.get(f"/v1/jobs/{job_id}").json() == job

    again = _upload(client, pdf, name="copy.pdf")
    assert again.status_code == 202
    assert again.json()["document_id"] == doc_id and again.json()["created"] is False
    assert again.json()["job_id"] == job_id  # the run that made its results


def test_missing_things_are_problem_details(client: TestClient) -> None:
    nobody = uuid.uuid4()
    for path in (f"/v1/documents/{nobody}", f"/v1/jobs/{nobody}", f"/v1/documents/{nobody}/job"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 404 and str(nobody) in answer.json()["detail"]
    invalid = client.get("/v1/documents/not-a-uuid")
    assert invalid.status_code == 422 and invalid.json()["title"] == "invalid request"


def test_bad_uploads_are_refused_before_anything_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, tmp_path, max_upload_bytes="50000")
    big = fx.make_text_pdf(tmp_path / "big.pdf", [f"Line {n} " * 40 for n in range(400)])
    assert big.stat().st_size > 50_000
    html = tmp_path / "page.pdf"
    html.write_text("<!doctype html><html><body>not a pdf</body></html>")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with TestClient(create_app()) as client:
        too_large = _upload(client, big)
        assert too_large.status_code == 413, too_large.text
        assert too_large.headers["content-type"] == "application/problem+json"
        assert "larger than 50,000 bytes" in too_large.json()["detail"]
        wrong = _upload(client, html)
        assert wrong.status_code == 415 and "HTML" in wrong.json()["detail"]
        assert _upload(client, empty).status_code == 400
        no_file = client.post("/v1/documents", data={"dpi": "200"}, files={"other": ("a", b"x")})
        assert no_file.status_code == 400 and "field named 'file'" in no_file.json()["detail"]
        not_multipart = client.post("/v1/documents", content=b"%PDF-1.4")
        assert not_multipart.status_code == 400
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0
    assert not list((tmp_path / "blobs").rglob("*.pdf"))


def test_options_are_checked_and_a_client_path_is_not_a_file_name(
    client: TestClient, tmp_path: Path
) -> None:
    pdf = fx.make_text_pdf(tmp_path / "doc.pdf", ["Only words"])
    for fields, message in (
        ({"options": "{not json"}, "not JSON"),
        ({"options": json.dumps({"engine": "x"})}, "unknown options: engine"),
        ({"ocr_mode": "sometimes"}, "ocr_mode must be one of"),
        ({"dpi": "5"}, "dpi must be a whole number from 36 to 1200"),
        ({"ocr_engine": "tesseract"}, "ocr_engine must be one of florence2, rapidocr"),
        ({"table_engine": "os:system"}, "table_engine must be one of"),
    ):
        answer = _upload(client, pdf, **fields)
        assert answer.status_code == 400 and message in answer.json()["detail"], answer.text
    answer = _upload(
        client, pdf, name="../../etc/passwd.pdf", tables="false", dpi="100", chart_engine="none"
    )
    assert answer.status_code == 202
    body = _wait_done(client, answer.json()["document_id"])
    assert body["document"]["filename"] == "passwd.pdf"
    assert body["pages"][0]["dpi"] == 100


def test_api_keys_are_required_outside_embedded_mode_and_can_be_revoked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, tmp_path, api_keys_required="true")
    with session_scope(settings.database_url) as session:
        key = keys.create_key(session, "tests")
    with TestClient(create_app()) as client:
        path = f"/v1/documents/{uuid.uuid4()}"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer di_0_nope"}).status_code == 401
        wrong = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
        assert client.get(path, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 404
        assert client.get("/healthz").status_code == 200  # probes need no key
        with session_scope(settings.database_url) as session:
            (info,) = keys.list_keys(session)
            assert info.last_used_at is not None and key.startswith(f"di_{info.prefix}_")
            assert keys.revoke_key(session, info.prefix) == 1
        assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_apikey_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from docintel.cli.main import app
    from docintel.settings import get_settings

    monkeypatch.setenv("DOCINTEL_DATA_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        created = runner.invoke(app, ["apikey", "create", "billing service"])
        assert created.exit_code == 0, created.output
        key = created.output.strip()
        assert key.startswith("di_")
        listed = runner.invoke(app, ["apikey", "list"]).output
        assert "billing service" in listed and "active" in listed and key not in listed
        prefix = key.split("_")[1]
        assert runner.invoke(app, ["apikey", "revoke", prefix]).exit_code == 0
        assert "revoked" in runner.invoke(app, ["apikey", "list"]).output
        assert runner.invoke(app, ["apikey", "revoke", prefix]).exit_code == 1
    finally:
        get_settings.cache_clear()


def test_readiness_and_openapi(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"database": "ok", "storage": "ok"}}
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/documents", "/v1/documents/{document_id}", "/v1/jobs/{job_id}"} <= set(paths)
    # Answers are described, so clients can be generated from the schema.
    components = schema["components"]["schemas"]
    assert {"Accepted", "DocumentList", "JobView", "SearchResults"} <= set(components)
    accepted = paths["/v1/documents"]["post"]["responses"]["202"]["content"]
    assert accepted["application/json"]["schema"] == {"$ref": "#/components/schemas/Accepted"}
    tags = {tag for path in paths.values() for op in path.values() for tag in op.get("tags", [])}
    assert tags == {"documents", "results", "jobs", "search"}


def test_the_api_process_never_imports_torch_or_an_engine_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads are stored and queued (distributed mode): nothing heavy is loaded."""
    settings = _settings(monkeypatch, tmp_path)
    pdf = fx.make_text_pdf(tmp_path / "doc.pdf", ["Words"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")} | {
        "DOCINTEL_DATA_DIR": str(tmp_path / "data"),
        "DOCINTEL_DATABASE_URL": settings.database_url,
        "DOCINTEL_STORAGE_URL": settings.storage_url,
        "DOCINTEL_BROKER_URL": "redis://127.0.0.1:1/0",  # down: the upload stays queued
        "DOCINTEL_API_KEYS_REQUIRED": "false",
    }
    code = f"""
import sys
from fastapi.testclient import TestClient
from docintel.api.app import create_app
with TestClient(create_app()) as client:
    with open({str(pdf)!r}, "rb") as handle:
        answer = client.post("/v1/documents", files={{"file": ("doc.pdf", handle)}})
    assert answer.status_code == 202, answer.text
    client.get("/v1/documents/" + answer.json()["document_id"]).raise_for_status()
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("torch", "transformers", "onnxruntime", "rapidocr")
               or m.startswith("docintel.engines.")
               and m not in ("docintel.engines.base", "docintel.engines.registry"))
print(heavy)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.postgres
def test_upload_on_postgres(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, tmp_path, pg_url)
    with TestClient(create_app()) as client:
        pdf = fx.make_text_pdf(tmp_path / "pg.pdf", [f"Postgres upload {uuid.uuid4()}"])
        answer = _upload(client, pdf)
        assert answer.status_code == 202
        body = _wait_done(client, answer.json()["document_id"])
        assert (
            body["document"]["status"] == "done" and "Postgres upload" in body["pages"][0]["text"]
        )


def _process_all(client: TestClient, paths: list[Path]) -> list[str]:
    ids = []
    for path in paths:
        answer = _upload(client, path)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["document_id"])
    for doc_id in ids:
        assert _wait_done(client, doc_id)["document"]["status"] == "done"
    return ids


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_listing_pages_through_every_document_once_and_filters(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if kind == "postgres" else ""
    _settings(monkeypatch, tmp_path, url)
    tag = uuid.uuid4().hex[:8]
    paths = [fx.make_text_pdf(tmp_path / f"list{n}.pdf", [f"List {tag} {n}"]) for n in range(5)]
    with TestClient(create_app()) as client:
        ids = _process_all(client, paths)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "source": "api", "status": "done"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/documents", params=params).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert set(ids) <= set(seen) and len(seen) == len(set(seen))
        assert seen.index(ids[-1]) < seen.index(ids[0])  # newest first
        none = client.get("/v1/documents", params={"status": "failed", "source": "nowhere"})
        assert none.json() == {"items": [], "next_cursor": None}
        assert client.get("/v1/documents", params={"cursor": "garbage!"}).status_code == 400
        assert client.get("/v1/documents", params={"limit": 0}).status_code == 422


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_search_finds_pages_with_highlighted_snippets(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if kind == "postgres" else ""
    _settings(monkeypatch, tmp_path, url)
    word = "zq" + uuid.uuid4().hex[:8]  # a word no other test's page holds
    first = fx.make_text_pdf(
        tmp_path / "a.pdf", ["Cover page", f"Revenue growth of {word} was strong"]
    )
    second = fx.make_text_pdf(tmp_path / "b.pdf", [f"Costs of {word} fell"])
    with TestClient(create_app()) as client:
        ids = _process_all(client, [first, second])
        hits = client.get("/v1/search", params={"q": word}).json()["hits"]
        assert {(h["document_id"], h["page"]) for h in hits} == {(ids[0], 2), (ids[1], 1)}
        assert all(f"<mark>{word}</mark>" in h["snippet"] for h in hits)
        assert {h["filename"] for h in hits} == {"a.pdf", "b.pdf"}
        both = client.get("/v1/search", params={"q": f"revenue {word}"}).json()["hits"]
        assert [(h["document_id"], h["page"]) for h in both] == [(ids[0], 2)]
        one_doc = client.get("/v1/search", params={"q": word, "document_id": ids[1]}).json()
        assert [h["document_id"] for h in one_doc["hits"]] == [ids[1]]
        assert client.get("/v1/search", params={"q": ""}).status_code == 422


def test_delete_removes_rows_and_blobs_and_refuses_unfinished(
    client: TestClient, tmp_path: Path
) -> None:
    pdf = fx.make_text_pdf(tmp_path / "gone.pdf", ["To be deleted", "Second page"])
    (doc_id,) = _process_all(client, [pdf])
    blobs = tmp_path / "blobs"
    assert len([p for p in blobs.rglob("*") if p.is_file()]) == 3  # original, two pages
    from docintel.settings import get_settings

    url = get_settings().database_url
    with session_scope(url) as session:
        doc = session.get(Document, uuid.UUID(doc_id))
        assert doc is not None
        doc.status = DocumentStatus.PROCESSING  # as if a worker still had it
    busy = client.delete(f"/v1/documents/{doc_id}")
    assert busy.status_code == 409 and "wait for it" in busy.json()["detail"]
    with session_scope(url) as session:
        doc = session.get(Document, uuid.UUID(doc_id))
        assert doc is not None
        doc.status = DocumentStatus.DONE
    assert client.delete(f"/v1/documents/{doc_id}").status_code == 204
    assert client.get(f"/v1/documents/{doc_id}").status_code == 404
    assert [p for p in blobs.rglob("*") if p.is_file()] == []
    assert client.delete(f"/v1/documents/{doc_id}").status_code == 404
    again = _upload(client, pdf)  # the same bytes are a new document now
    assert again.json()["created"] is True


def test_cancel_stops_a_queued_document_and_nothing_brings_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docintel.pipeline.context import StageContext
    from docintel.pipeline.finalize import finalize_document
    from docintel.pipeline.split import split_document

    # A broker nobody listens on: uploads are stored and stay queued.
    settings = _settings(
        monkeypatch, tmp_path, broker_url="redis://127.0.0.1:1/0", api_keys_required="false"
    )
    pdf = fx.make_text_pdf(tmp_path / "stop.pdf", ["One", "Two", "Three"])
    with TestClient(create_app()) as client:
        doc_id = _upload(client, pdf).json()["document_id"]
        with session_scope(settings.database_url) as session:
            # Split by hand, and a worker holding page 1 under its lease.
            split_document(StageContext(session, settings), doc_id)
            session.flush()
            session.execute(
                update(Page)
                .where(Page.document_id == uuid.UUID(doc_id), Page.number == 1)
                .values(claim_token="worker-1")
            )
        answer = client.post(f"/v1/documents/{doc_id}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        body = client.get(f"/v1/documents/{doc_id}").json()
        assert body["document"]["status"] == "cancelled"
        assert body["document"]["error"]["code"] == "cancelled"
        assert {p["status"] for p in body["pages"]} == {"failed"}
        assert {p["error"]["code"] for p in body["pages"]} == {"cancelled"}
        with session_scope(settings.database_url) as session:
            assert session.scalar(select(func.count()).where(Page.claim_token.is_not(None))) == 0
            ctx = StageContext(session, settings)
            assert split_document(ctx, doc_id) == [] and finalize_document(ctx, doc_id) == []
        assert client.get(f"/v1/documents/{doc_id}").json()["document"]["status"] == "cancelled"
        again = client.post(f"/v1/documents/{doc_id}/cancel")
        assert again.status_code == 409
        assert client.post(f"/v1/documents/{uuid.uuid4()}/cancel").status_code == 404


def test_metrics_count_documents_pages_and_failures_from_the_database(
    client: TestClient, tmp_path: Path
) -> None:
    good = fx.make_text_pdf(tmp_path / "good.pdf", ["One", "Two"])
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 200)
    _process_all(client, [good])
    _wait_done(client, _upload(client, broken).json()["document_id"])
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    lines = set(answer.text.splitlines())
    assert 'docintel_documents{status="done"} 1.0' in lines
    assert 'docintel_documents{status="failed"} 1.0' in lines
    processed = 'docintel_pages_processed_total{engine="pdf-text-layer",source="api",'
    assert processed + 'text_source="native"} 2.0' in lines, answer.text
    assert 'docintel_pages_waiting{stage="cpu"} 0.0' in lines
    assert 'docintel_failures_total{code="corrupt",kind="document"} 1.0' in lines, answer.text
    # Both pages of the good file went through render and the text layer once each.
    for stage in ("render", "text_layer"):
        assert f'docintel_stage_seconds_count{{stage="{stage}"}} 2.0' in lines, answer.text
        assert f'docintel_stage_seconds_bucket{{le="+Inf",stage="{stage}"}} 2.0' in lines
        (total,) = [
            x for x in lines if x.startswith(f'docintel_stage_seconds_sum{{stage="{stage}"')
        ]
        assert float(total.rsplit(" ", 1)[1]) > 0
    assert 'docintel_stage_seconds_bucket{le="0.01",stage="text_layer"}' in answer.text
    assert "docintel_queue_messages" not in answer.text  # embedded: no broker to ask


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_file(
    client: TestClient, tmp_path: Path
) -> None:
    from docintel.models import Job

    first = fx.make_text_pdf(tmp_path / "first.pdf", ["First file"])
    other = fx.make_text_pdf(tmp_path / "other.pdf", ["Another file"])
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}

    def send(path: Path, **fields: str) -> Any:
        with path.open("rb") as handle:
            return client.post(
                "/v1/documents", files={"file": (path.name, handle)}, data=fields, headers=key
            )

    made = send(first)
    assert made.status_code == 202 and made.json()["created"] is True
    doc_id = made.json()["document_id"]
    _wait_done(client, doc_id)
    # A retry, even one that asks to reprocess, gets the first answer and starts nothing.
    retry = send(first, reprocess="true")
    assert retry.status_code == 202
    assert retry.json() == {**made.json(), "created": False}
    assert retry.headers["location"] == f"/v1/documents/{doc_id}"
    from docintel.settings import get_settings

    with session_scope(get_settings().database_url) as session:
        jobs = session.scalar(
            select(func.count()).select_from(Job).where(Job.document_id == uuid.UUID(doc_id))
        )
    assert jobs == 1
    reused = send(other)
    assert reused.status_code == 409 and "another file" in reused.json()["detail"]
    key["Idempotency-Key"] = "k" * 256
    assert send(first).status_code == 400


def test_reprocess_runs_the_stored_original_again_with_new_options(
    client: TestClient, tmp_path: Path
) -> None:
    pdf = fx.make_text_pdf(tmp_path / "again.pdf", ["Run me twice"])
    (doc_id,) = _process_all(client, [pdf])
    assert client.get(f"/v1/documents/{doc_id}").json()["pages"][0]["dpi"] == 150
    answer = client.post(f"/v1/documents/{doc_id}/reprocess", json={"options": {"dpi": 100}})
    assert answer.status_code == 202, answer.text
    assert answer.json()["document_id"] == doc_id
    body = _wait_done(client, doc_id)
    assert body["document"]["status"] == "done" and body["pages"][0]["dpi"] == 100
    assert body["pages"][0]["text"] == "Run me twice"
    bad = client.post(f"/v1/documents/{doc_id}/reprocess", json={"options": {"dpi": "x"}})
    assert bad.status_code == 400
    assert (
        client.post(f"/v1/documents/{doc_id}/reprocess", json={"options": [1]}).status_code == 400
    )
    assert client.post(f"/v1/documents/{uuid.uuid4()}/reprocess").status_code == 404


def test_a_key_whose_prefix_is_all_digits_is_revoked_by_its_prefix(tmp_path: Path) -> None:
    """Was: an all-digit prefix (about one key in 40) was read as a row id: nothing revoked."""
    from docintel.models import ApiKey

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        keys.create_key(session, "digits")
        row = session.scalars(select(ApiKey)).one()
        row.prefix = "12345678"
        keys.create_key(session, "by id")
    with session_scope(url) as session:
        assert keys.revoke_key(session, "12345678") == 1
        assert keys.revoke_key(session, "1") == 0  # that one, already revoked
        assert keys.revoke_key(session, "2") == 1  # the second key, by its id


def test_a_page_range_selects_pages_and_one_naming_none_fails_clearly(
    client: TestClient, tmp_path: Path
) -> None:
    pdf = fx.make_text_pdf(tmp_path / "three.pdf", ["First", "Second", "Third"])
    bad = _upload(client, pdf, pages="two")
    assert bad.status_code == 400 and "pages: 'two'" in bad.json()["detail"]
    doc_id = _upload(client, pdf, pages="2-").json()["document_id"]
    body = _wait_done(client, doc_id)
    assert [p["number"] for p in body["pages"]] == [2, 3]
    job = client.get(f"/v1/documents/{doc_id}/job").json()
    assert (job["pages_total"], job["pages_done"]) == (2, 2)

    other = fx.make_text_pdf(tmp_path / "short.pdf", ["Only page"])
    none_id = _upload(client, other, pages="5-9").json()["document_id"]
    failed = _wait_done(client, none_id)["document"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "zero_pages"
    assert "the page range 5-9 names none of its 1 pages" in failed["error"]["message"]
