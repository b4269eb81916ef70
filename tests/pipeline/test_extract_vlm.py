"""The extraction stage with the phi35v engine (a tiny checkpoint) in the embedded pipeline."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from docintel.db import session_scope
from docintel.engines.base import EngineConfig
from docintel.engines.phi35v.engine import Phi35VisionEngine
from docintel.engines.region_prompts import PROMPT_VERSION
from docintel.models import Extraction, Page
from docintel.output import document_json, document_markdown, load_document
from docintel.service import submit
from docintel.settings import Settings
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf
from tests.fixtures.tiny_phi35v import build_tiny_phi35v, scripted_decoder
from tests.runtime import apply_env, base_env

ANSWER = "| Region | Units |\n| --- | --- |\n| North | 1,204 |\n| South | 17 |"
_checkpoint: dict[str, Path] = {}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _checkpoint["dir"] = build_tiny_phi35v(tmp_path_factory.mktemp("tiny_phi35v"))
    return _checkpoint["dir"]


def scripted(config: EngineConfig) -> Phi35VisionEngine:
    """The real engine on the tiny checkpoint, its decoding scripted to ``ANSWER``."""
    engine = Phi35VisionEngine(replace(config, model=str(_checkpoint["dir"]), device="cpu"))
    engine.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(
        engine.loaded.tokenizer, [[ANSWER]]
    )
    return engine


def _process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, env: dict[str, str]
) -> tuple[dict[str, Any], str, Settings]:
    settings = apply_env(monkeypatch, {**base_env(tmp_path, database_url), **env})
    spec = TableSpec(SALES, text_above=[f"Sales report {uuid.uuid4()}"])
    pdf = make_table_pdf(tmp_path / "sales.pdf", [spec])
    submitted = submit(settings, pdf, options={})
    with session_scope(settings.database_url) as session:
        doc = load_document(session, submitted.document_id)
        assert doc is not None
        return document_json(doc), document_markdown(doc), settings


def test_phi35v_answers_land_as_tables_with_model_and_prompt_version(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path
) -> None:
    name = f"{__name__}:scripted"
    env = {"DOCINTEL_TABLE_ENGINE": name}
    out, markdown, _ = _process(tmp_path, monkeypatch, database_url, env)
    page = out["pages"][0]
    assert out["document"]["status"] == "done" and page["status"] == "done"
    (table,) = page["tables"]
    assert table["status"] == "done" and table["engine"] == "phi35v"
    assert table["rows"] == [["Region", "Units"], ["North", "1,204"], ["South", "17"]]
    assert table["model"] == str(tiny_dir) and table["prompt_version"] == PROMPT_VERSION
    assert ANSWER in markdown


def test_phi35v_from_settings_keeps_the_raw_answer_of_a_failed_region(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path
) -> None:
    """Random weights never finish a table: the region fails, the raw text is kept,
    and the page's text is untouched."""
    env = {
        "DOCINTEL_TABLE_ENGINE": "phi35v",
        "DOCINTEL_EXTRACT_MODEL": str(tiny_dir),
        "DOCINTEL_EXTRACT_OPTIONS": json.dumps({"table_max_new_tokens": 6}),
        "DOCINTEL_DEVICE": "cpu",
    }
    out, _, settings = _process(tmp_path, monkeypatch, database_url, env)
    page = out["pages"][0]
    assert page["status"] == "done" and "North" in page["text"]
    (table,) = page["tables"]
    assert table["status"] == "failed" and "ran out of tokens (the limit is 6)" in table["error"]
    assert table["model"] == str(tiny_dir)
    with session_scope(settings.database_url) as session:
        (data,) = session.scalars(
            select(Extraction.data)
            .join(Page)
            .where(Page.document_id == uuid.UUID(out["document"]["id"]))
        ).all()
    assert len(data["raw"]) == 6  # six characters: one token each
