"""A multipart upload streamed to a temporary file, the size limit enforced as it arrives.

Starlette's own form parsing reads the whole body before the handler runs, so
a 10 GB upload would be written out in full before anyone could refuse it.
Here the body is parsed chunk by chunk (python-multipart's streaming parser):
the ``file`` part goes straight to a temporary file, other small fields are
kept as text, and the request fails with ``UploadTooLarge`` the moment the
file passes the limit. Memory use is one chunk, whatever the upload's size.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

_FIELD_LIMIT = 64 * 1024  # options JSON and the like


class UploadError(ValueError):
    """The request is not a usable upload; the message says why."""


class UploadTooLarge(UploadError):
    pass


@dataclass(slots=True)
class Upload:
    path: Path | None = None  # the ``file`` part, on disk
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Part:
    name: str | None = None
    filename: str | None = None
    header_field: bytes = b""
    header_value: bytes = b""
    text: bytearray = field(default_factory=bytearray)


async def receive_upload(
    content_type: str, chunks: AsyncIterator[bytes], directory: Path, limit: int
) -> Upload:
    """Parse a multipart body into ``directory``; the caller deletes ``upload.path``."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError("send the file as multipart/form-data, in a field named 'file'")
    upload = Upload()
    part = _Part()
    sink: IO[bytes] | None = None
    problem: list[UploadError] = []

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        if part.header_field.lower() == b"content-disposition":
            _, disposition = parse_options_header(part.header_value)
            name = disposition.get(b"name")
            filename = disposition.get(b"filename")
            part.name = name.decode("utf-8", "replace") if name is not None else None
            part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        part.header_field, part.header_value = b"", b""

    def on_headers_finished() -> None:
        nonlocal sink
        if part.name == "file":
            if upload.path is not None:
                problem.append(UploadError("send one file per request"))
                return
            # Closed in on_part_end (or on failure below): it outlives this callback.
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
                dir=directory, delete=False, suffix=".upload"
            )
            upload.path, upload.filename, sink = Path(handle.name), part.filename, handle

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.name == "file" and sink is not None:
            upload.size += end - start
            if upload.size > limit:
                if not problem:
                    problem.append(UploadTooLarge(f"the file is larger than {limit:,} bytes"))
                return
            sink.write(data[start:end])
        elif part.name is not None:
            part.text += data[start:end]
            if len(part.text) > _FIELD_LIMIT:
                problem.append(UploadError(f"the field {part.name!r} is too long"))

    def on_part_end() -> None:
        nonlocal sink
        if part.name == "file" and sink is not None:
            sink.close()
            sink = None
        elif part.name is not None:
            upload.fields[part.name] = part.text.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in chunks:
            parser.write(chunk)
            if problem:
                raise problem[0]
        parser.finalize()
        if problem:
            raise problem[0]
        if upload.path is None:
            raise UploadError("no file: send it in a multipart field named 'file'")
    except BaseException:
        if sink is not None:
            sink.close()
        if upload.path is not None:
            upload.path.unlink(missing_ok=True)
        raise
    return upload
