"""JSON Lines by byte ranges: one JSON object per line; a position is the byte offset of a line.

Compressed JSON Lines (gzip, zstd, bzip2, xz; told by magic bytes, ``chunkpilot.formats.compressed``)
are the same format: a position is the offset of a line in the decompressed data, and planning
reads each compressed file once (``chunkpilot.formats.staging``: whole files per chunk, or staged
pieces for a file bigger than a chunk's share).

Planning of plain files reads a few hundred bytes around each split point (``next_line_start``); a worker
streams its ranges block by block and never holds more than a block. A position is a line
start when it is 0 or the byte before it is ``\\n``. Only ``\\n`` ends a line, so CRLF, U+2028
inside JSON strings and multi-byte UTF-8 characters never move a cut into a record.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import groupby
from typing import Callable, Iterable, Iterator, Sequence

from chunkpilot.errors import InputError
from chunkpilot.formats.base import PlannedChunks, Record, plan_chunks
from chunkpilot.formats.compressed import (COMPRESSED_SUFFIXES, COMPRESSIONS, compression_named, compression_of,
                                           decompressed_blocks, lines_of, peek)
from chunkpilot.formats.staging import Scan, piece_count, read_piece, scan
from chunkpilot.spec import ChunkManifest, InputPin, SourceRange
from chunkpilot.store import Store, split_object_uri

BLOCK = 4 * 1024 * 1024
WHITESPACE = b" \t\r\n\x0b\x0c"
_BOM = b"\xef\xbb\xbf"
# Probes are independent small reads: on S3 each is a round trip, so they go out from a pool.
PROBE_CONCURRENCY = 16
_MAGIC = (
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a zip archive"),
)
HEAD_BYTES = 8  # enough for every compression's magic
# Compressed files are decompressed at submit side by side (zlib and zstd release the GIL).
SCAN_CONCURRENCY = 4


class JsonlFormat:
    """The ``jsonl`` input format (``*.jsonl``, ``*.json``, ``*.ndjson``, each also ``.gz``/``.zst``/``.bz2``/``.xz``)."""

    name = "jsonl"
    title = "JSON Lines"
    unit = "bytes"
    suffixes = tuple(base + c for base in (".jsonl", ".json", ".ndjson") for c in ("", *COMPRESSED_SUFFIXES))

    def not_this_format(self, head: bytes) -> str | None:
        compression = compression_of(head)
        if compression is None:
            return not_jsonl_reason(head)
        inner = peek(head, compression)
        reason = not_jsonl_reason(inner) if inner else None
        return f"{COMPRESSIONS[compression].title}-compressed {reason}" if reason else None

    def plan(self, pins: list[InputPin], chunks: int, stage: Store | None = None, batch: str = "") -> PlannedChunks:
        """Chunks by bytes. A compressed input is decompressed once here; if bigger than one and a
        half chunks' share it is cut into pieces written under ``stage`` (None: cut, nothing written:
        a dry run) in ``layout.staged_input(batch, …)`` keys."""
        from chunkpilot import layout

        read_sizes: list[int] = []  # list.append is thread-safe
        stores = [split_object_uri(p.uri) for p in pins]
        with ThreadPoolExecutor(PROBE_CONCURRENCY, thread_name_prefix="plan-head") as pool:
            heads = list(pool.map(lambda p: _head(stores[p[0]], p[1]), enumerate(pins)))
        read_sizes.extend(len(h) for h in heads)
        compressions = [compression_of(h) for h in heads]
        notes = [f"{pin.uri} is named as {compression_named(pin.uri) or 'uncompressed'} but holds "
                 f"{f'{c}-compressed data' if c else 'uncompressed data'}: read as {c or 'plain text'}"
                 for pin, c in zip(pins, compressions) if compression_named(pin.uri) != c]
        share = sum(p.size for p in pins) / chunks
        scans: dict[int, Scan] = {}
        if any(compressions):
            todo = [i for i, c in enumerate(compressions) if c]

            def scan_one(i: int) -> Scan:
                pieces = piece_count(pins[i].size, share)
                where = None if stage is None else (lambda k, i=i: (stage, layout.staged_input(batch, i, k)))
                return scan(pins[i], compressions[i], pieces, where)

            with ThreadPoolExecutor(SCAN_CONCURRENCY, thread_name_prefix="plan-scan") as pool:
                scans = dict(zip(todo, pool.map(scan_one, todo)))
            read_sizes.extend(s.compressed_read for s in scans.values())
            staged = sum(1 for s in scans.values() if s.cuts)
            notes.append(
                f"{len(scans)} compressed input(s) read once to learn their size and line starts; "
                + (f"{staged} bigger than a chunk's share staged as {sum(len(s.cuts) + 1 for s in scans.values() if s.cuts)} "
                   "zstd pieces in the run's folder, so each worker decompresses only its share"
                   + (" (dry run: cut, not written)" if stage is None else "") + "; " if staged else "")
                + "the others are read whole, one chunk each or several to a chunk")
        pinned = [_pinned(pin, compressions[i], scans.get(i)) for i, pin in enumerate(pins)]

        def probe(source: int, offset: int) -> int:
            if source in scans:  # only between whole pieces: the nearest piece boundary
                bounds = (0, *scans[source].cuts, scans[source].units)
                return min(bounds, key=lambda b: (abs(b - offset), b))
            store, key = stores[source]

            def read(start: int, end: int) -> bytes:
                data = store.get_range(key, start, end)
                read_sizes.append(len(data))
                return data

            return next_line_start(read, pins[source].size, offset)

        sizes = [p.length for p in pinned]
        if scans and len(pins) == len(scans) and sum(len(s.cuts) + 1 for s in scans.values()) <= chunks:
            manifests = _one_per_piece(pinned, self.unit)  # every piece or file its own chunk
        else:
            with ThreadPoolExecutor(PROBE_CONCURRENCY, thread_name_prefix="plan-probe") as pool:
                manifests = plan_chunks(sizes, chunks, probe, pool.map, self.unit)
        return PlannedChunks(manifests, sum(read_sizes), pins=pinned if scans else None, notes=tuple(notes))

    def records(self, pins: Sequence[InputPin], manifest: ChunkManifest, columns=None) -> Iterator[Record]:
        # A compressed input's consecutive ranges (a --sample plan has one per record) share one pass.
        for source, group in groupby(manifest.ranges, key=lambda r: r.source):
            pin = pins[source]
            spans = [(r.start, r.end) for r in group]
            if pin.compression:
                lines: Iterable[tuple[int, bytes]] = compressed_lines(pin, spans)
            else:
                store, key = split_object_uri(pin.uri)
                lines = (item for a, b in spans for item in iter_lines(store, key, a, b))
            for offset, line in lines:
                yield decode_line((source, offset), (source, offset + len(line)), line)


    def boundary(self, pins: Sequence[InputPin], source: int, offset: int) -> int | None:
        """The next line start (a small ranged read); None inside a compressed input (a staged
        piece or a whole file is read from its start: a cut inside it saves nothing)."""
        pin = pins[source]
        if pin.compression:
            return None
        store, key = split_object_uri(pin.uri)
        return next_line_start(lambda a, b: store.get_range(key, a, b), pin.size, offset)


def _head(where: tuple[Store, str], pin: InputPin) -> bytes:
    store, key = where
    return store.get_range(key, 0, min(pin.size, HEAD_BYTES)) if pin.size else b""


def _pinned(pin: InputPin, compression: str | None, found: Scan | None) -> InputPin:
    if found is None:
        return pin
    staged = None
    if found.cuts:  # pieces not written (a dry run) have no URI: they are read from the file itself
        bounds = (0, *found.cuts, found.units)
        uris = found.uris or ("",) * (len(bounds) - 1)
        staged = tuple((a, b, uri) for a, b, uri in zip(bounds, bounds[1:], uris))
    return replace(pin, units=found.units, compression=compression, staged=staged)


def _one_per_piece(pins: Sequence[InputPin], unit: str) -> list[ChunkManifest]:
    """A chunk for every staged piece and every whole file, in input order (empty ones dropped)."""
    from chunkpilot.names import chunk_id

    spans = []
    for source, pin in enumerate(pins):
        bounds = [0, pin.length] if not pin.staged else [0, *(b for _, b, _ in pin.staged)]
        spans += [(source, a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    return [ChunkManifest(chunk_id(i, len(spans)), (SourceRange(s, a, b),), unit) for i, (s, a, b) in enumerate(spans)]


def compressed_lines(pin: InputPin, spans: Sequence[tuple[int, int]]) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` of a compressed input's lines starting in any of ``spans`` (sorted
    ``[start, end)`` decompressed offsets), in one pass: from the staged pieces that hold them, or
    by decompressing the file from its start."""
    lo, hi = spans[0][0], spans[-1][1]
    if pin.staged and all(uri for _, _, uri in pin.staged):
        sources = [(a, read_piece(uri)) for a, b, uri in pin.staged if a < hi and b > lo]
    else:
        store, key = split_object_uri(pin.uri)
        sources = [(0, _file_blocks(store, key, pin))]
    i = 0
    for base, blocks in sources:
        for offset, line in lines_of(blocks, base):
            while i < len(spans) and offset >= spans[i][1]:
                i += 1
            if i == len(spans):
                blocks.close()
                return
            if offset >= spans[i][0]:
                yield offset, line


def _file_blocks(store: Store, key: str, pin: InputPin) -> Iterator[bytes]:
    with store.open(key) as stream:
        yield from decompressed_blocks(stream.read, pin.compression or "gzip", pin.uri)


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
    for magic, what in (*_MAGIC, *((c.magic, f"{c.title}-compressed data") for c in COMPRESSIONS.values())):
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
