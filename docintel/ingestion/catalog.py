"""The sources: rows in ``sources``, added by ``docintel sources add`` or named in settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from docintel.ingestion.inboxes import folder_path, source_kind
from docintel.models import Source
from docintel.pipeline.routing import engine_choice_error

# Per-source options that steer the scan; every other option goes to the documents.
SCAN_OPTIONS = frozenset({"settle_s"})


class SourceError(ValueError):
    """A source that cannot be added as asked (a name taken, a URI we cannot read)."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str
    uri: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def settle_s(self) -> float:
        return float(self.options.get("settle_s", 0))

    @property
    def document_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k not in SCAN_OPTIONS}


def add_source(session: Session, spec: SourceSpec, *, replace: bool = False) -> Source:
    uri = _normalised(spec.uri)
    if (engines := engine_choice_error(spec.document_options)) is not None:
        raise SourceError(f"source {spec.name!r}: {engines}")
    row = session.scalar(select(Source).where(Source.name == spec.name))
    if row is not None and not replace:
        raise SourceError(f"a source named {spec.name!r} exists ({row.uri})")
    if row is None:
        row = Source(name=spec.name, kind=source_kind(uri), uri=uri, options={}, enabled=True)
        session.add(row)
    row.kind, row.uri, row.options = source_kind(uri), uri, dict(spec.options)
    session.flush()
    return row


def remove_source(session: Session, name: str) -> bool:
    row = session.scalar(select(Source).where(Source.name == name))
    if row is None:
        return False
    session.delete(row)  # its source_files go with it; the documents stay
    return True


def sync_from_settings(session: Session, specs: list[dict[str, Any]]) -> list[SourceError]:
    """Add or update the sources named in ``DOCINTEL_SOURCES``; others are left alone.

    An entry that cannot be taken is returned, not raised: the others still sync.
    """
    refused: list[SourceError] = []
    for raw in specs:
        try:
            spec = SourceSpec(str(raw["name"]), str(raw["uri"]), dict(raw.get("options", {})))
        except (KeyError, TypeError, ValueError) as error:
            refused.append(
                SourceError(
                    f"DOCINTEL_SOURCES: each entry needs a name and a uri ({raw!r}): {error}"
                )
            )
            continue
        try:
            row = session.scalar(select(Source).where(Source.name == spec.name))
            if row is None or row.uri != _normalised(spec.uri) or row.options != spec.options:
                add_source(session, spec, replace=True)
        except SourceError as error:
            refused.append(error)
    return refused


def spec_of(row: Source) -> SourceSpec:
    return SourceSpec(row.name, row.uri, dict(row.options))


def _normalised(uri: str) -> str:
    try:
        kind = source_kind(uri)
    except ValueError as error:
        raise SourceError(str(error)) from error
    if kind == "folder":
        # Absolute, so a scan from a worker in another folder finds the same place.
        return str(folder_path(uri).resolve())
    return uri
