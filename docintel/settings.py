"""Typed settings, read from ``DOCINTEL_*`` environment variables and an optional ``.env``.

The defaults give the embedded mode: a SQLite file, a local blob folder and an
in-process queue, all under ``DOCINTEL_DATA_DIR`` (default: the user's data
directory, e.g. ``~/.local/share/docintel``). Pointing ``DATABASE_URL`` at
Postgres and ``BROKER_URL`` at Redis turns the same code into the distributed mode.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OcrMode = Literal["auto", "always", "never"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCINTEL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        # The user's data directory, not the current folder: `docintel show` run from
        # anywhere finds the same documents and leaves no stray folder behind.
        default_factory=lambda: Path(platformdirs.user_data_dir("docintel")),
        description="Root of embedded-mode state.",
    )
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir.")
    broker_url: str = Field(
        default="", description="Celery broker; empty runs tasks in-process (embedded mode)."
    )
    storage_url: str = Field(
        default="", description="file:///path or s3://bucket/prefix; default data_dir/blobs."
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint.")
    s3_region: str | None = None

    # Engines: stages never name a model, they ask the registry for these.
    ocr_engine: str = "rapidocr"
    ocr_model: str = Field(
        default="florence-community/Florence-2-base",
        description="Checkpoint id or local directory for model-based OCR engines.",
    )
    ocr_batch_size: int = Field(default=8, ge=1)
    ocr_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads per OCR engine; default: a worker's share of the CPUs.",
    )
    ocr_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Engine-specific options as JSON, e.g. {"tile_size": 1280, "num_beams": 3}.',
    )
    detect_regions: bool = Field(
        default=True,
        description="Find table and chart regions (the OCR model's detector where it has "
        "one, else rulings and text alignment on the CPU) and extract them.",
    )
    table_engine: str = Field(
        default="cpu-tables",
        description="Extraction engine for table regions; 'none' stores them unread.",
    )
    chart_engine: str = Field(
        default="none",
        description="Extraction engine for chart regions; 'none' stores them with their "
        "title (status no_engine): chart data needs a vision-language model.",
    )
    extract_model: str = Field(
        default="microsoft/Phi-3.5-vision-instruct",
        description="Checkpoint id or local directory for the phi35v and vlm extraction engines.",
    )
    extract_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Extraction engine options as JSON, e.g. {"table_max_crops": 16, '
        '"chart_max_new_tokens": 1024}.',
    )
    extract_batch_size: int = Field(
        default=8, ge=1, description="Regions per batched generate call of a model engine."
    )
    extract_batch_pages: int = Field(
        default=8, ge=1, description="Pages whose regions one GPU extraction task reads."
    )
    engine_models: dict[str, str] = Field(
        default_factory=dict,
        description='Checkpoints by engine name, as JSON, e.g. {"vlm": "/models/qwen2-vl"}: '
        "for model engines that documents choose beside the configured ones.",
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: str = Field(default="auto", description="auto | float32 | float16 | bfloat16")

    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts PDF passwords kept with a document; every "
        "process must share it. Embedded mode makes one in data_dir when unset.",
    )

    sources: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Inbox folders and S3 prefixes to scan, as JSON, e.g. [{"name": "inbox", '
        '"uri": "/data/in", "options": {"settle_s": 10, "ocr_mode": "auto"}}]; added to '
        "those from `docintel sources add`.",
    )
    scan_interval_s: float = Field(
        default=30, gt=0, description="How often `docintel beat` scans the sources."
    )

    api_keys_required: bool | None = Field(
        default=None,
        description="Whether the API asks for an API key; default: yes, except in "
        "embedded mode (a local, single-user setup).",
    )

    # Webhooks (docintel.webhooks): a POST to each URL when a document finishes.
    webhook_urls: list[str] = Field(
        default_factory=list,
        description='Global webhooks, called for every document, as JSON: ["https://..."].',
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Key of the HMAC-SHA256 signature; no webhook is ever sent without it.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs that resolve to loopback, link-local, private or "
        "reserved addresses (refused by default: a client could aim them at your network).",
    )
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_backoff_s: float = Field(
        default=15.0,
        gt=0,
        description="Wait before the first retry; doubled for each later one, with jitter.",
    )
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)

    # Limits: bad or hostile input is refused with a clear error, never crashes a worker.
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_pages: int = Field(default=5000, ge=1)
    max_page_pixels: int = Field(default=80_000_000, ge=1)
    render_dpi: int = Field(default=200, ge=36, le=1200)
    ocr_mode: OcrMode = "auto"

    # Queue behaviour.
    task_time_limit_s: int = Field(default=600, ge=1)
    lease_s: int = Field(
        default=20,
        ge=2,
        description="A worker's hold on a page, renewed every third of it while it works; "
        "a lease that lapses (a killed or paused worker) is taken over by any worker.",
    )
    stuck_after_s: int = Field(
        default=900,
        ge=1,
        description="Safety net: unclaimed work with no progress for this long is re-sent.",
    )
    max_page_attempts: int = Field(
        default=3, ge=1, description="A page whose lease lapses this often fails with timeout."
    )
    visibility_timeout_s: int = Field(
        default=3600, ge=1, description="Redis redelivers an unacked message after this."
    )
    sweep_interval_s: int = Field(
        default=10, ge=1, description="How often some worker (one at a time) sweeps."
    )
    gpu_batch_pages: int = Field(default=8, ge=1, description="Pages per GPU task.")
    embedded_threads: int = Field(
        default=0,
        ge=0,
        description="Pages processed at once in embedded mode; 0: one per CPU.",
    )
    # Fault injection for the crash and pause tests: seconds a stage sleeps while it
    # holds its lease, e.g. {"render": 5}, or {"render:2": 3600} for page 2 only.
    # Never set in production.
    test_stage_delays: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'docintel.db').resolve()}"
        if not self.storage_url:
            self.storage_url = (self.data_dir / "blobs").resolve().as_uri()
        return self

    @model_validator(mode="after")
    def _check_webhooks(self) -> Settings:
        # Refused at start, not at the first finished document an hour later.
        from docintel.webhooks.targets import TargetRefused, check_url

        if self.webhook_urls and not self.webhook_secret.get_secret_value():
            raise ValueError(
                "DOCINTEL_WEBHOOK_URLS needs DOCINTEL_WEBHOOK_SECRET: webhooks are always signed"
            )
        for url in self.webhook_urls:
            try:
                check_url(url)
            except TargetRefused as error:
                raise ValueError(f"DOCINTEL_WEBHOOK_URLS: {error}") from None
        return self

    def timing_problems(self) -> list[str]:
        """Queue timings that make the same work run twice (correct, but wasted)."""
        problems = []
        if self.visibility_timeout_s <= self.task_time_limit_s:
            problems.append(
                f"DOCINTEL_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) is not above "
                f"DOCINTEL_TASK_TIME_LIMIT_S ({self.task_time_limit_s}): Redis may hand a "
                "running task to a second worker"
            )
        return problems

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: tasks run in this process."""
        return not self.broker_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
