"""The command line answers bad names and unready databases with one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests import services
from tests.fixtures import documents as fx


def _docintel(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "docintel", *args],
        env=base | {"DOCINTEL_DATA_DIR": str(tmp_path / "state"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_show_finds_a_document_by_id_prefix_or_file_name(tmp_path: Path) -> None:
    first = fx.make_text_pdf(tmp_path / "first report.pdf", ["First"])
    second = fx.make_text_pdf(tmp_path / "second.pdf", ["Second"])
    done = _docintel(tmp_path, "process", str(first), str(second), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    import json

    doc_id = json.loads((tmp_path / "out" / "first report.json").read_text())["document"]["id"]

    for ref in (doc_id, doc_id[:8], doc_id.replace("-", "")[:12], "first report.pdf"):
        shown = _docintel(tmp_path, "show", ref)
        assert shown.returncode == 0, (ref, shown.stderr)
        assert json.loads(shown.stdout)["document"]["id"] == doc_id

    assert "no document 'nothing-like-this'" in _one_line(
        _docintel(tmp_path, "show", "nothing-like-this")
    )
    finished = _one_line(_docintel(tmp_path, "cancel", doc_id[:8]))
    assert finished == f"docintel: document {doc_id} has already finished"
    missing = "00000000-0000-4000-8000-000000000000"
    assert _one_line(_docintel(tmp_path, "show", missing)) == f"docintel: no document {missing}"


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_names_resolve_on_both_databases_and_ambiguity_lists_candidates(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from docintel import migrate
    from docintel.cli.documents import DocumentNotFound, resolve_document
    from docintel.db import session_scope
    from docintel.models import Document

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'names.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("pg_url")
    tag = uuid.uuid4().hex[:6]  # the Postgres database is shared by the session
    ids = [uuid.UUID(f"{tag}a{n}-0000-4000-8000-00000000000{n}") for n in (1, 2)]
    with session_scope(url) as session:
        for n, doc_id in enumerate(ids):
            session.add(
                Document(
                    id=doc_id,
                    sha256=f"{tag}{n}".ljust(64, "0"),
                    filename=f"{tag}-report.pdf",
                    media_type="application/pdf",
                    size_bytes=1,
                )
            )
    with session_scope(url) as session:
        assert resolve_document(session, str(ids[1])) == ids[1]
        assert resolve_document(session, f"{tag}a2-0000") == ids[1]  # a prefix with a dash
        assert resolve_document(session, f"{tag}A1".upper()) == ids[0]  # any case
        for ambiguous in (tag, f"{tag}a", f"{tag}-report.pdf"):
            with pytest.raises(DocumentNotFound, match="names several documents") as error:
                resolve_document(session, ambiguous)
            assert str(ids[0]) in str(error.value) and str(ids[1]) in str(error.value)
        with pytest.raises(DocumentNotFound, match="give an id, the start of one"):
            resolve_document(session, "abc")  # too short for an id, no such file


def test_an_embedded_database_migrates_itself_for_show(tmp_path: Path) -> None:
    line = _one_line(_docintel(tmp_path, "show", "report.pdf"))
    assert line.startswith("docintel: no document 'report.pdf'")
    assert (tmp_path / "state" / "docintel.db").exists()


@pytest.mark.postgres
def test_a_postgres_database_never_migrated_says_to_run_db_upgrade(tmp_path: Path) -> None:
    services.require("PostgreSQL", services.PG_ADMIN_URL, 5432)
    url = services.create_database()
    try:
        doc = fx.make_text_pdf(tmp_path / "doc.pdf", ["Words"])
        for args in (("show", "doc.pdf"), ("process", str(doc), "--out", str(tmp_path / "o"))):
            line = _one_line(_docintel(tmp_path, *args, DOCINTEL_DATABASE_URL=url))
            assert line == (
                "docintel: the database is never migrated; this docintel needs "
                f"{_head()}: run `docintel db upgrade`"
            )
    finally:
        services.drop_database(url)


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    line = _one_line(_docintel(tmp_path, "show", "x.pdf", DOCINTEL_DATABASE_URL=url))
    assert line.startswith("docintel: cannot reach the database:")


def _head() -> str:
    from alembic.script import ScriptDirectory

    from docintel import migrate

    (head,) = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_heads()
    return str(head)


def test_list_search_and_delete_from_the_command_line(tmp_path: Path) -> None:
    word = "zq" + uuid.uuid4().hex[:6]
    first = fx.make_text_pdf(tmp_path / "alpha.pdf", ["Cover", f"Profit {word} rose"])
    second = fx.make_text_pdf(tmp_path / "beta.pdf", ["Nothing to see"])
    done = _docintel(tmp_path, "process", str(first), str(second), "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr

    listed = _docintel(tmp_path, "list").stdout.strip().splitlines()
    assert [line.split("\t")[-1] for line in listed] == ["beta.pdf", "alpha.pdf"]
    assert all(line.split("\t")[1:3] in (["done", "2"], ["done", "1"]) for line in listed)
    assert _docintel(tmp_path, "list", "--status", "failed").stdout == ""
    assert "no status 'finished'" in _one_line(_docintel(tmp_path, "list", "--status", "finished"))

    found = _docintel(tmp_path, "search", word)
    assert found.returncode == 0, found.stderr
    (hit,) = found.stdout.strip().splitlines()
    alpha_id = next(line.split("\t")[0] for line in listed if line.endswith("alpha.pdf"))
    assert hit.split("\t")[:3] == [alpha_id, "page 2", "alpha.pdf"]
    assert f"Profit {word} rose" in hit and "<mark>" not in hit  # no markup on a pipe
    assert "no page matches" in _one_line(_docintel(tmp_path, "search", "zz" + word))

    deleted = _docintel(tmp_path, "delete", "alpha.pdf")
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted {alpha_id}"
    assert [line.split("\t")[-1] for line in _docintel(tmp_path, "list").stdout.splitlines()] == [
        "beta.pdf"
    ]
    assert "no document 'alpha.pdf'" in _one_line(_docintel(tmp_path, "delete", "alpha.pdf"))


def test_an_engine_nobody_registered_is_refused_before_anything_runs(tmp_path: Path) -> None:
    pdf = fx.make_text_pdf(tmp_path / "a.pdf", ["Engines"])
    result = _docintel(
        tmp_path, "process", str(pdf), "--out", str(tmp_path / "out"), "--ocr-engine", "tesseract"
    )
    assert _one_line(result) == "docintel: --ocr-engine must be one of florence2, rapidocr"
    result = _docintel(
        tmp_path, "process", str(pdf), "--out", str(tmp_path / "out"), "--table-engine", "os:system"
    )
    assert _one_line(result).startswith("docintel: --table-engine must be one of cpu-tables")
    assert not (tmp_path / "out").exists() and not (tmp_path / "state").exists()
