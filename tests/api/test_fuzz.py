"""The API fuzzed from its own OpenAPI schema (schemathesis): no input gives a 5xx.

Embedded mode on a throwaway SQLite database, with a few real documents in it
so that reads of existing ids are explored too, not only 404s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from docintel import migrate
from docintel.api.app import create_app
from tests.fixtures import documents as fx
from tests.runtime import base_env, reset_process_state


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'fuzz.db'}"
    migrate.upgrade(url)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in base_env(tmp, url).items():
            patch.setenv(key, value)
        reset_process_state()
        app = create_app()
        with TestClient(app) as client:
            pdf = fx.make_text_pdf(tmp / "seed.pdf", ["Seed document for the fuzzer"])
            with pdf.open("rb") as handle:
                assert client.post("/v1/documents", files={"file": handle}).status_code == 202
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    reset_process_state()


def test_no_request_makes_the_server_fail(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10  # the schema describes the API, not a part of it
    for operation in operations:
        _fuzz(operation)


def _fuzz(operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Any) -> None:
        response = case.call()
        where = (case.method, case.formatted_path, response.status_code, response.text[:300])
        assert response.status_code < 500, where
        if response.status_code >= 400:  # every error is a problem document
            (content_type,) = response.headers["content-type"]  # schemathesis: lists
            assert content_type.startswith("application/problem+json"), where

    check()
