"""CSV and TSV by byte ranges: a header row, then one record per row; a position is the byte offset
of a row.

Rows follow RFC 4180: a field in double quotes may hold the delimiter, newlines and doubled
quotes (``""``). So a newline ends a row only outside quotes, and whether a byte is inside quotes
depends on every quote before it: planning reads each file once (a byte scan, no parsing) and cuts
only at newlines where the quotes seen so far are balanced — a chunk boundary never cuts a quoted
field. The same pass notes the line number at each cut, so a worker can name the line of a bad row
without reading what comes before its range.

Fields stay text, exactly as written (no type inference: ``007`` stays ``"007"``, an empty field
is ``""``), keyed by the header's names, in the header's order — the simplest rule that never
changes a user's data; a template can convert. A row with more or fewer fields than the header is
an error record (``ragged_row``) naming its line. UTF-8, with or without a byte order mark; rows
may end in ``\\n`` or ``\\r\\n``. A quote inside an unquoted field is not RFC 4180: the rows up to
the next quote then read as one row, which is an error record if its field count is off.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterable, Iterator, Sequence

from chunkpilot.errors import InputError
from chunkpilot.formats.base import PlannedChunks, Record, plan_chunks, split_points
from chunkpilot.formats.compressed import compression_of
from chunkpilot.spec import ChunkManifest, InputPin
from chunkpilot.store import Store, split_object_uri

BLOCK = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
SCAN_CONCURRENCY = 4


def iter_rows(store: Store, key: str, start: int, end: int, block: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """``(offset, row)`` for every row starting in ``[start, end)``: rows keep their line end and may
    hold newlines inside quotes. ``start`` must be a row start, ``end`` a row start or the size."""
    pos, buf, buf_at = start, b"", start
    row, scan, quotes = 0, 0, 0  # the current row's start and how far it was scanned (in buf), its quotes so far
    while pos < end:
        data = store.get_range(key, pos, min(end, pos + block))
        if not data:
            raise InputError(f"input {store.uri}/{key} ended at byte {pos}, expected {end}: was it truncated?")
        pos += len(data)
        buf = buf[row:] + data
        buf_at += row
        scan -= row
        row = 0
        while True:
            nl = buf.find(b"\n", scan)
            if nl < 0:
                quotes += buf.count(b'"', scan)
                scan = len(buf)
                break
            quotes += buf.count(b'"', scan, nl)
            scan = nl + 1
            if quotes % 2 == 0:
                yield buf_at + row, buf[row:scan]
                row, quotes = scan, 0
    if row < len(buf):
        yield buf_at + row, buf[row:]


def _cuts(store: Store, key: str, size: int, offsets: list[int]) -> dict[int, tuple[int, int]]:
    """For each of ``offsets`` (sorted), the first row start at or after it and that row's line
    number (1-based: the header is line 1): one pass over the file."""
    out: dict[int, tuple[int, int]] = {}
    todo = list(offsets)
    line = 1
    if not todo:
        return out
    for offset, row in iter_rows(store, key, 0, size):
        while todo and todo[0] <= offset:
            out[todo.pop(0)] = (offset, line)
        if not todo:
            return out
        line += row.count(b"\n")
    for rest in todo:
        out[rest] = (size, line)
    return out


class DelimitedFormat:
    """``csv`` (``*.csv``) and ``tsv`` (``*.tsv``, ``*.tab``): rows under a header row, fields as text."""

    unit = "bytes"

    def __init__(self, name: str, delimiter: str, suffixes: tuple[str, ...]):
        self.name, self.delimiter, self.suffixes = name, delimiter, suffixes
        self.title = name.upper()

    def not_this_format(self, head: bytes) -> str | None:
        if compression_of(head):
            return "compressed data (compressed CSV/TSV is not read: decompress it first)"
        if b"\0" in head:
            return "binary data"
        first = head.removeprefix(_BOM).lstrip()[:1]
        if first in (b"{", b"["):
            return "JSON"
        return None

    def header(self, store: Store, key: str, size: int, uri: str) -> tuple[list[str], int, int]:
        """The file's column names, where its first data row starts and that row's line number. InputError for a file
        without a header row or with empty or repeated names."""
        first = next(iter_rows(store, key, 0, size, block=64 * 1024), None) if size else None
        if first is None:
            raise InputError(f"input {uri} is empty: a {self.title} file needs a header row")
        _, raw = first
        text = raw.removeprefix(_BOM)
        try:
            names = next(csv.reader(io.StringIO(text.decode("utf-8"), newline=""), delimiter=self.delimiter), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"input {uri}: its header row cannot be read: {exc}") from None
        if not names or any(not n.strip() for n in names):
            raise InputError(f"input {uri}: its header row (line 1) has an empty column name: {names}")
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            raise InputError(f"input {uri}: its header row names {', '.join(sorted(seen))} more than once")
        return names, len(raw), 1 + raw.count(b"\n")

    def plan(self, pins: list[InputPin], chunks: int) -> PlannedChunks:
        """Chunks by bytes, cut only between rows (one scan per file); ``fields``: the columns all
        files have. Each file's pin records the line number at each of its cuts."""
        stores = [split_object_uri(p.uri) for p in pins]
        headers = [self.header(*stores[i], p.size, p.uri) for i, p in enumerate(pins)]
        starts = [0]
        for p in pins:
            starts.append(starts[-1] + p.size)
        wanted: dict[int, list[int]] = {}
        for point in split_points(starts[-1], chunks):
            source = max(i for i in range(len(pins)) if starts[i] <= point)
            offset = max(point - starts[source], headers[source][1])  # never inside the header
            wanted.setdefault(source, []).append(offset)

        def scan(source: int) -> dict[int, tuple[int, int]]:
            return _cuts(*stores[source], pins[source].size, sorted(set(wanted[source])))

        with ThreadPoolExecutor(SCAN_CONCURRENCY, thread_name_prefix="plan-csv") as pool:
            found = dict(zip(wanted, pool.map(scan, wanted)))
        marks = {s: {row: line for row, line in cuts.values()} for s, cuts in found.items()}

        def probe(source: int, offset: int) -> int:
            return found[source][max(offset, headers[source][1])][0]

        # Each file's header is not a record: its rows start after it.
        sizes = [p.size for p in pins]
        manifests = plan_chunks(sizes, chunks, probe, map, self.unit)
        manifests = [_skip_headers(m, headers) for m in manifests]
        manifests = [m for m in manifests if m.ranges]
        from chunkpilot.names import chunk_id

        manifests = [ChunkManifest(chunk_id(i, len(manifests)), m.ranges, m.unit) for i, m in enumerate(manifests)]
        pinned = [replace(p, lines_at=tuple(sorted(marks.get(i, {}).items())) or None)
                  for i, p in enumerate(pins)]
        common = list(headers[0][0])
        for names, _, _ in headers[1:]:
            common = [n for n in common if n in names]
        read = sum(p.size for i, p in enumerate(pins) if i in found) + sum(h[1] for h in headers)
        return PlannedChunks(manifests, read, pins=pinned, fields=tuple(common))

    def records(self, pins: Sequence[InputPin], manifest: ChunkManifest,
                columns: Iterable[str] | None = None) -> Iterator[Record]:
        headers: dict[int, tuple[list[str], int, int]] = {}
        for r in manifest.ranges:
            pin = pins[r.source]
            store, key = split_object_uri(pin.uri)
            if r.source not in headers:
                headers[r.source] = self.header(store, key, pin.size, pin.uri)
            names, first_row, first_line = headers[r.source]
            line = dict(pin.lines_at or ()).get(r.start, first_line if r.start == first_row else None)
            if line is None:
                raise InputError(f"input {pin.uri}: the plan has no line number for byte {r.start}: submit a new run")
            for offset, raw in iter_rows(store, key, r.start, r.end):
                yield self.decode_row((r.source, offset), raw, names, line)
                line += raw.count(b"\n")

    def boundary(self, pins, source: int, offset: int) -> int | None:
        """None: a row start cannot be told without scanning from a known one (quoted newlines)."""
        return None

    def decode_row(self, position, raw: bytes, names: list[str], line: int) -> Record:
        """One row as a Record: its fields by the header's names, an error naming its line, or blank."""
        end = (position[0], position[1] + len(raw))
        body = raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw
        if not body.strip():
            return Record(position, end, blank=True, raw=raw)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Record(position, end, error=("invalid_utf8", f"line {line} is not valid UTF-8 (byte {exc.start})"), raw=raw)
        try:
            values = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter, strict=True))
        except csv.Error as exc:
            return Record(position, end, error=("invalid_row", f"line {line}: {exc}"), raw=raw)
        if len(values) != len(names):
            return Record(position, end, error=("ragged_row", f"line {line} has {len(values)} field(s), the header "
                                                              f"has {len(names)}"), raw=raw)
        return Record(position, end, fields=dict(zip(names, values)), raw=raw)


def _skip_headers(m: ChunkManifest, headers) -> ChunkManifest:
    from chunkpilot.spec import SourceRange

    ranges = []
    for r in m.ranges:
        start = max(r.start, headers[r.source][1])
        if r.end > start:
            ranges.append(SourceRange(r.source, start, r.end))
    return ChunkManifest(m.chunk, tuple(ranges), m.unit)
