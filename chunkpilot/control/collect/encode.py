"""Collect's outputs in the shape the file name asks for: compressed (``.gz``, ``.zst``, ``.bz2``,
``.xz``) and/or a table (``.csv``, ``.tsv``).

Collect merges into JSON Lines first (a local temporary file beside the output: the merge's fast
paths — whole parts copied by the kernel — stay as they are); this module then streams that file
into the output, a block or a line at a time, so memory stays flat whatever the run's size.

Tables: ``--format records`` gives one column per input field (in the order fields first appear:
a CSV input's header order) plus ``<key>`` and ``<key>_error``; ``--format openai`` gives ``id``,
``custom_id``, ``response`` and ``error``. Text stays text; any other value (an answer that is a
JSON object, an error ``{code, message}``, a number) is written as its JSON; null is an empty
field. Finding the columns reads the merged file once more (local, sequential): that is the price
of a header row without holding the records.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from contextlib import contextmanager
from typing import IO, Any, Iterator

from chunkpilot.errors import OutputError
from chunkpilot.formats.compressed import compression_named, strip_compression_suffix

TABLES = {".csv": ",", ".tsv": "\t"}
GZIP_LEVEL = 6  # gzip(1)'s default: the size users expect from a .gz
ZSTD_LEVEL = 3  # zstd(1)'s default
COPY_BLOCK = 1 << 20


def output_shape(path: str) -> tuple[str | None, str | None]:
    """(table delimiter or None, compression or None) that the output's file name asks for."""
    compression = compression_named(path)
    base = strip_compression_suffix(path).lower()
    table = next((d for suffix, d in TABLES.items() if base.endswith(suffix)), None)
    if base.endswith((".parquet", ".parq")) and compression:
        raise OutputError(f"-o {path}: Parquet compresses its own columns: write {strip_compression_suffix(path)}")
    return table, compression


@contextmanager
def compressed_writer(path: str, compression: str | None) -> Iterator[IO[bytes]]:
    """A binary file at ``path`` that compresses what is written to it (or not, for None)."""
    if compression is None:
        with open(path, "wb") as f:
            yield f
    elif compression == "gzip":
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as f:
            yield f
    elif compression == "zstd":
        import zstandard

        with open(path, "wb") as raw, zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1).stream_writer(raw) as f:
            yield f
    elif compression == "bzip2":
        with bz2.open(path, "wb") as f:
            yield f
    elif compression == "xz":
        with lzma.open(path, "wb") as f:
            yield f
    else:
        raise OutputError(f"cannot write {compression} output")


def encode(merged: str, path: str, table: str | None, compression: str | None, fmt: str, output_key: str) -> None:
    """Stream the merged JSON Lines at ``merged`` into ``path`` in the asked shape."""
    with compressed_writer(path, compression) as out:
        if table is None:
            with open(merged, "rb") as f:
                while block := f.read(COPY_BLOCK):
                    out.write(block)
            return
        columns = table_columns(merged, fmt, output_key)
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
        try:
            writer = csv.writer(text, delimiter=table, lineterminator="\r\n")
            writer.writerow(columns)
            with open(merged, "rb") as f:
                for line in f:
                    row = json.loads(line)
                    writer.writerow([cell(row.get(c)) for c in columns])
            text.flush()
        finally:
            text.detach()


def table_columns(merged: str, fmt: str, output_key: str) -> list[str]:
    """The table's header: OpenAI output's four fields, or every record field in first-seen order
    with the answer's columns last (``<key>_input`` only when some input line was no record)."""
    if fmt == "openai":
        return ["id", "custom_id", "response", "error"]
    last = [output_key, f"{output_key}_error", f"{output_key}_input"]  # _input: lines that were no record
    seen: dict[str, None] = {}
    with open(merged, "rb") as f:
        for line in f:
            for key in json.loads(line):
                if key not in seen:
                    seen[key] = None
    return [k for k in seen if k not in last] + [k for k in last if k in seen or k != last[2]]


def cell(value: Any) -> str:
    """A table cell: text as it is, null as empty, anything else as its JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
