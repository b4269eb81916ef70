"""Bookkeeping for scheduled ingestion, so no file is ever imported twice."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from docintel.models.base import Base, BigId, JSONType, utcnow


class Source(Base):
    """An inbox folder or an S3 prefix that is scanned on a schedule."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    uri: Mapped[str] = mapped_column(String(1024))
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_scan_at: Mapped[datetime | None]
    # Why the last scan could not list the source (a folder gone, a bucket refused).
    last_error: Mapped[str | None] = mapped_column(Text)


class SourceFile(Base):
    """A version of a file seen in a source; a changed size or mtime is a new version.

    The unique key makes two scans that see one version insert one row, and the
    state moves ``seen`` -> ``importing`` by a conditional update that only one
    scan can win: that is what keeps overlapping scans from importing twice.
    """

    __tablename__ = "source_files"
    __table_args__ = (
        UniqueConstraint("source_id", "path", "size_bytes", "mtime_ns"),
        Index("ix_source_files_source_id_state", "source_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(BigId, ForeignKey("sources.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(2048))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    document_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("documents.id", ondelete="SET NULL"), index=True
    )
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="seen", server_default="seen")
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime | None]
