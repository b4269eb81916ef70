"""The HTTP API: upload documents, follow their jobs, read the results.

Uploads are streamed to a temporary file (the size limit enforced as bytes
arrive), sniffed from their content, stored and queued exactly as the CLI does
(``service.accept`` / ``service.start``). In embedded mode the work then runs
in this process on a background thread; otherwise workers take it. Errors are
RFC 9457 problem details. The API never imports an engine or torch.

The routes live in ``docintel.api.routes``, one router per resource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from docintel.api.deps import Launcher
from docintel.api.metrics import DatabaseCollector
from docintel.api.problems import Problem, problem_response
from docintel.api.routes import documents, jobs, operations, results, search
from docintel.passwords import SecretKeyError
from docintel.settings import get_settings


def create_app() -> FastAPI:
    """The app, configured from ``DOCINTEL_*`` settings like every other process."""
    settings = get_settings()
    launcher = Launcher(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        launcher.close()

    app = FastAPI(
        title="docintel",
        summary="PDFs and scans to structured, queryable data.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.launcher = launcher
    app.state.metrics = CollectorRegistry(auto_describe=False)
    app.state.metrics.register(DatabaseCollector(settings))

    for module in (operations, documents, search, jobs, results):
        app.include_router(module.router)
    _install_problem_handlers(app)
    return app


def _install_problem_handlers(app: FastAPI) -> None:
    """Every error as problem details (RFC 9457), never FastAPI's default shapes."""

    @app.exception_handler(Problem)
    async def _on_problem(_: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem_response(error.status_code, str(error.detail), None)

    @app.exception_handler(SecretKeyError)
    async def _on_secret_key(_: Request, error: SecretKeyError) -> JSONResponse:
        # The server's configuration, not the request, is at fault.
        return problem_response(503, "cannot keep a PDF password", str(error))

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(422, "invalid request", f"{where}: {first['msg']}")
