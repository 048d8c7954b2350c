"""JSON Lines by byte ranges: one JSON object per line; a position is the byte offset of a line.

Planning reads a few hundred bytes around each split point (``next_line_start``); a worker
streams its ranges block by block and never holds more than a block. A position is a line
start when it is 0 or the byte before it is ``\\n``. Only ``\\n`` ends a line, so CRLF, U+2028
inside JSON strings and multi-byte UTF-8 characters never move a cut into a record.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

from chunkpilot.errors import InputError
from chunkpilot.formats.base import PlannedChunks, Record, plan_chunks
from chunkpilot.spec import ChunkManifest, InputPin
from chunkpilot.store import Store, split_object_uri

BLOCK = 4 * 1024 * 1024
WHITESPACE = b" \t\r\n\x0b\x0c"
_BOM = b"\xef\xbb\xbf"
# Probes are independent small reads: on S3 each is a round trip, so they go out from a pool.
PROBE_CONCURRENCY = 16
_MAGIC = (
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "bzip2-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
)


class JsonlFormat:
    """The ``jsonl`` input format (``*.jsonl``, ``*.json``, ``*.ndjson``)."""

    name = "jsonl"
    title = "JSON Lines"
    unit = "bytes"
    suffixes = (".jsonl", ".json", ".ndjson")

    def not_this_format(self, head: bytes) -> str | None:
        return not_jsonl_reason(head)

    def plan(self, pins: list[InputPin], chunks: int) -> PlannedChunks:
        read_sizes: list[int] = []  # list.append is thread-safe
        stores = [split_object_uri(p.uri) for p in pins]

        def probe(source: int, offset: int) -> int:
            store, key = stores[source]

            def read(start: int, end: int) -> bytes:
                data = store.get_range(key, start, end)
                read_sizes.append(len(data))
                return data

            return next_line_start(read, pins[source].size, offset)

        with ThreadPoolExecutor(PROBE_CONCURRENCY, thread_name_prefix="plan-probe") as pool:
            manifests = plan_chunks([p.size for p in pins], chunks, probe, pool.map, self.unit)
        return PlannedChunks(manifests, sum(read_sizes))

    def records(self, pins: Sequence[InputPin], manifest: ChunkManifest, columns=None) -> Iterator[Record]:
        for r in manifest.ranges:
            store, key = split_object_uri(pins[r.source].uri)
            for offset, line in iter_lines(store, key, r.start, r.end):
                yield decode_line((r.source, offset), (r.source, offset + len(line)), line)


def decode_line(position, end, line: bytes) -> Record:
    """One line as a Record: its JSON object's fields, an error saying why it is none, or blank."""
    if not line.strip(WHITESPACE):
        return Record(position, end, blank=True, raw=line)
    text = line[len(_BOM):] if position[1] == 0 and line.startswith(_BOM) else line  # a BOM opens the file
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Record(position, end, error=("invalid_utf8", f"line is not valid UTF-8 (byte {exc.start})"), raw=line)
    try:
        # Without its line ending: an error at the end of a cut-off line is at its last column, as
        # Python's parser says of the line itself (not at "line 2 column 1").
        obj = json.loads(decoded.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        return Record(position, end, error=("invalid_json", f"line is not valid JSON: {exc.msg} (column {exc.colno})"), raw=line)
    if not isinstance(obj, dict):
        return Record(position, end, error=("not_an_object", f"expected a JSON object, got {type(obj).__name__}"), raw=line)
    return Record(position, end, fields=obj, raw=line)


def iter_lines(store: Store, key: str, start: int, end: int, block: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` for every line starting in ``[start, end)``; lines keep their ``\\n``.

    ``start`` must be a line start and ``end`` a line start or the object's size,
    which the planner guarantees; the last line of a file may lack a newline.
    """
    pos, carry, carry_at = start, b"", start
    while pos < end:
        data = store.get_range(key, pos, min(end, pos + block))
        if not data:
            raise InputError(f"input {store.uri}/{key} ended at byte {pos}, expected {end}: was it truncated?")
        pos += len(data)
        buf = carry + data if carry else data
        base, cursor = carry_at, 0
        while True:
            nl = buf.find(b"\n", cursor)
            if nl < 0:
                break
            yield base + cursor, buf[cursor : nl + 1]
            cursor = nl + 1
        carry, carry_at = buf[cursor:], base + cursor
    if carry:
        yield carry_at, carry


def next_line_start(read: Callable[[int, int], bytes], size: int, offset: int, block: int = 1024) -> int:
    """The first line start at or after ``offset`` in an object of ``size`` bytes.

    ``read(start, end)`` returns bytes ``[start, end)``. The first read is small (most
    JSONL records are under 1 KB, so 1,000 probes read < 0.1% of a 1 GB input) and
    reads grow geometrically, so a very long line costs a few reads, not one per block.
    """
    if offset <= 0:
        return 0
    pos = offset - 1  # the line starts at offset iff byte offset-1 is '\n'
    while pos < size:
        data = read(pos, min(size, pos + block))
        found = data.find(b"\n")
        if found >= 0:
            return pos + found + 1
        if not data:
            break
        pos += len(data)
        block *= 2
    return size


def not_jsonl_reason(head: bytes) -> str | None:
    """What the first bytes of a file look like when its first record cannot be a JSON object;
    None when it may be one. Pure: planning reads these few bytes of each input, no more."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if b"\0" in head:
        return "binary data"
    first = next((line.strip() for line in head.removeprefix(_BOM).split(b"\n") if line.strip()), b"")
    if not first or first.startswith(b"{"):
        return None
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(first) - 4:  # not merely a character cut by the end of the sample
            return "binary data (not UTF-8)"
        text = first[: exc.start].decode("utf-8")
    shown = text if len(text) <= 60 else text[:57] + "..."
    if text.startswith("["):
        return f"JSON that is not one object per line (first line: {shown!r})"
    if "," in text or "\t" in text:
        return f"CSV/TSV (first line: {shown!r})"
    return f"plain text (first line: {shown!r})"
