"""Receiving ``POST /v1/files``: a multipart body streamed to a local temporary file, with a size limit.

The body is parsed as it arrives (python-multipart's push parser): the ``file`` part's bytes go
straight to disk and are counted, so an upload is never held whole in memory, and one past the
limit is refused (413) as soon as it crosses it — not after it has been received. Small fields
(``purpose``) are kept up to ``MAX_FIELD_BYTES``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import AsyncIterator

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from chunkpilot.control.serve.objects import ApiError

MAX_FIELD_BYTES = 4096
FILE_FIELD = "file"


@dataclass
class Upload:
    """A received upload: its bytes in ``path`` (the caller removes it), and the form's fields."""

    path: str
    filename: str
    size: int
    fields: dict[str, str]


class _Parts:
    """python-multipart callbacks: the file part to a file, other parts to ``fields``."""

    def __init__(self, out, limit: int):
        self.out, self.limit = out, limit
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, bytearray] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_data, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data}

    def _part_begin(self) -> None:
        self._headers, self._name, self._is_file = {}, None, False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        if name == FILE_FIELD:
            if self.filename is not None:
                raise ApiError(400, "give one file per upload", param="file", code="invalid_file")
            self._is_file = True
            self.filename = os.path.basename(options.get(b"filename", b"upload.jsonl").decode("utf-8", "replace")) or "upload.jsonl"
        else:
            self.fields.setdefault(name, bytearray())

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.limit:
                raise ApiError(413, f"the file is larger than this server takes ({self.limit} bytes; "
                                    "launcher serve --max-upload-bytes)", param="file", code="file_too_large")
            self.out.write(data[start:end])
        elif self._name is not None:
            value = self.fields[self._name]
            if len(value) + end - start > MAX_FIELD_BYTES:
                raise ApiError(400, f"form field {self._name!r} is too long", param=self._name)
            value += data[start:end]


async def receive_upload(content_type: str | None, content_length: str | None, body: AsyncIterator[bytes],
                         limit: int, folder: str | None = None) -> Upload:
    """Parse a multipart/form-data body into an ``Upload``; ApiError (400, 413) for a body that is not
    one, has no ``file`` part, or is too big. The temporary file is removed on any failure."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(400, "upload files as multipart/form-data with a 'file' part and purpose=batch",
                       code="invalid_content_type")
    if content_length and content_length.isdigit() and int(content_length) > limit + 64 * 1024:
        raise ApiError(413, f"the file is larger than this server takes ({limit} bytes; launcher serve "
                            "--max-upload-bytes)", param="file", code="file_too_large")
    fd, path = tempfile.mkstemp(prefix="chunkpilot-upload-", suffix=".jsonl", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            parts = _Parts(out, limit)
            parser = MultipartParser(options[b"boundary"], parts.callbacks())
            async for block in body:
                parser.write(block)
            parser.finalize()
        if parts.filename is None:
            raise ApiError(400, "the upload has no 'file' part", param="file", code="missing_file")
        fields = {k: v.decode("utf-8", "replace") for k, v in parts.fields.items()}
        return Upload(path, parts.filename, parts.size, fields)
    except BaseException as exc:
        os.unlink(path)
        if isinstance(exc, ApiError):
            raise
        if isinstance(exc, Exception) and type(exc).__module__.startswith("python_multipart"):
            raise ApiError(400, f"the multipart body cannot be parsed: {exc}", code="invalid_multipart") from None
        raise
