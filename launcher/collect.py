"""Merge a run's committed parts into one output, in input order, each record exactly once.

Parts of a chunk are visited in order of their first key. Each part holds every
record of its interval, sorted, so the merge keeps only "how far have we
written" (``reach``): a part entirely past it is copied as bytes, a part entirely
before it is a duplicate (a zombie's or a resumed attempt's), and only a part
straddling it is read line by line.

Counting as we copy: records, ok/error lines, and custom_ids used by more than one
record. Output is scanned a few MB at a time (in bulk with numpy when it is
installed): the custom_id of each line is reduced to a 64-bit hash and handed,
with where it was written, to ``DuplicateCounter``, which keeps at most a fixed
number in memory and spills the rest to temporary files partitioned by hash. So
memory stays flat whatever the record count, the count is exact (up to 64-bit
hash collisions), and the examples in the report are read back from the output
at the recorded offsets — no second pass over the output.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import tempfile
import threading
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO

from launcher.errors import IncompleteRunError
from launcher.observe import observe
from launcher.runs import OpenRun
from launcher.spec import PartName, SuccessMarker
from launcher.store import ObjectInfo, Store
from worker.output import key_of_line

try:  # a launcher-only install may not have numpy: collect then scans line by line (slower, same results)
    import numpy as np
except ImportError:  # pragma: no cover - exercised only without numpy
    np = None

_CUSTOM_ID = re.compile(rb'"custom_id": "((?:[^"\\]|\\.)*)"')
_ID_VALUE = re.compile(rb'((?:[^"\\]|\\.)*)"')
_OK = b'"error": null}\n'
BLOCK = 1024 * 1024
SCAN_BYTES = 4 * BLOCK  # output bytes scanned per bulk pass
ID_BUDGET = 1 << 20  # custom_id hashes held in memory (16 bytes each) before spilling to disk

# Every line starts '{"id": "batch_req_<run>_<source>_<offset>", "custom_id": "' (worker/output.py).
_HEAD = b'{"id": "batch_req_'
_LINK = b'", "custom_id": "'
_ID_DIGITS = 24  # where to look for the id's closing quote: "<source>_<offset>"
ID_WIDTH = 64  # custom_ids shorter than this without escapes are hashed in bulk; longer ones one by one


@dataclass
class CollectReport:
    records: int = 0
    ok: int = 0
    errors: int = 0
    skipped_blank: int = 0
    duplicates_dropped: int = 0  # records committed twice (zombies, resumes) written once
    duplicate_custom_ids: int = 0  # distinct custom_ids that appear on more than one record
    duplicate_examples: list[str] = field(default_factory=list)
    duplicate_example_offsets: list[int] = field(default_factory=list)  # where (in the output) those ids start
    incomplete_chunks: list[str] = field(default_factory=list)
    mismatched_chunks: list[str] = field(default_factory=list)  # output count != _SUCCESS count
    bytes: int = 0


def collect(run: OpenRun, out: BinaryIO, allow_partial: bool = False, max_examples: int = 5) -> CollectReport:
    """Write the run's merged output to ``out``; refuse if a chunk is incomplete unless ``allow_partial``."""
    observed = observe(run.run_store, run.spec, backend=None)
    report = CollectReport(incomplete_chunks=[c for c, o in observed.items() if o.done is None])
    if report.incomplete_chunks and not allow_partial:
        shown = ", ".join(report.incomplete_chunks[:10])
        more = "" if len(report.incomplete_chunks) <= 10 else f" and {len(report.incomplete_chunks) - 10} more"
        raise IncompleteRunError(
            f"{len(report.incomplete_chunks)} of {len(observed)} chunk(s) are not done ({shown}{more}): "
            "run `launcher watch` to finish them, or pass --allow-partial"
        )
    expected = sum(p.records for o in observed.values() for p, _ in o.parts)
    with DuplicateCounter(expected) as ids:
        with _Sink(out, report, ids, run.spec.run_id) as sink:
            for chunk in sorted(observed):
                _merge_chunk(run.run_store, chunk, sorted(observed[chunk].parts, key=lambda p: (p[0].first, _neg(p[0].end))), sink)
        report.duplicate_custom_ids, report.duplicate_example_offsets = ids.finish(max_examples)
    for chunk in sorted(observed):
        done = observed[chunk].done
        if done is not None:
            marker = SuccessMarker.from_json(run.run_store.get(done.key))
            report.skipped_blank += marker.skipped_blank
            if sink.chunk_records.get(chunk, 0) != marker.records:
                report.mismatched_chunks.append(chunk)
    return report


def _neg(key: tuple[int, int]) -> tuple[int, int]:
    return (-key[0], -key[1])


def _merge_chunk(store: Store, chunk: str, parts: list[tuple[PartName, ObjectInfo]], sink: "_Sink") -> None:
    reach: tuple[int, int] | None = None
    for part, info in parts:
        if reach is not None and part.end <= reach:
            sink.report.duplicates_dropped += part.records
            continue
        with store.open(info.key) as stream:
            if reach is None or part.first >= reach:
                sink.copy(stream, info.size, chunk)
            else:
                _copy_after(stream, chunk, reach, sink)
        reach = part.end if reach is None else max(reach, part.end)


def _copy_after(stream: BinaryIO, chunk: str, reach: tuple[int, int], sink: "_Sink") -> None:
    kept = []
    for line in stream:
        if key_of_line(line) < reach:
            sink.report.duplicates_dropped += 1
            continue
        kept.append(line if line.endswith(b"\n") else line + b"\n")
    if kept:
        data = b"".join(kept)
        sink.copy(io.BytesIO(data), len(data), chunk)


class _Batch:
    """A reusable buffer of whole output lines on their way to the scanner."""

    def __init__(self, size: int):
        self.buf = bytearray(size)
        self.used = 0
        self.pieces: list[tuple[int, str]] = []  # (end offset in buf, chunk) of each part copied in
        self.base = 0  # output offset of buf[0]

    def reserve(self, size: int) -> None:
        """Make room for ``size`` more bytes after ``used``."""
        if self.used + size > len(self.buf):
            self.buf.extend(bytes(self.used + size - len(self.buf)))


class _Sink:
    """Copies parts to the output through a few reusable buffers; a background thread counts them.

    Each part is read straight into a batch buffer (no intermediate bytes objects,
    whose fresh pages cost more than the copy) and written from there. Full batches
    (``SCAN_BYTES``) go to a scanner thread: copying (system calls) and scanning
    (numpy) both release the GIL, so on two cores they overlap. Three buffers
    circulate, so memory stays bounded whatever the output size.
    """

    BUFFERS = 3

    def __init__(self, out: BinaryIO, report: CollectReport, ids: "DuplicateCounter", run_id: str):
        self.out, self.report, self.ids = out, report, ids
        self.chunk_records: dict[str, int] = {}  # output lines per chunk, checked against _SUCCESS
        self._head = _HEAD + run_id.encode() + b"_"
        self._written = 0  # output bytes so far
        self._free: queue.Queue = queue.Queue()
        for _ in range(self.BUFFERS):
            self._free.put(_Batch(SCAN_BYTES + BLOCK))
        self._batch = self._free.get()
        self._full: queue.Queue = queue.Queue()
        self._failure: BaseException | None = None
        self._scratch = None  # the scanner's reusable work array
        self._scanner = threading.Thread(target=self._scan_batches, name="collect-scan", daemon=True)
        self._scanner.start()

    def __enter__(self) -> "_Sink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._hand_over()
        self._full.put(None)
        self._scanner.join()
        if exc_type is None and self._failure is not None:
            raise self._failure

    def copy(self, stream: BinaryIO, size: int, chunk: str) -> None:
        """Copy a part of ``size`` bytes (whole lines of ``chunk``) to the output."""
        batch = self._batch
        if batch.used and batch.used + size + 2 > len(batch.buf):
            self._hand_over()
            batch = self._batch
        batch.reserve(size + 2)
        start = end = batch.used
        with memoryview(batch.buf) as view:
            # One byte more than listed: getting it means the object is longer (only defensive).
            while got := stream.readinto(view[end : start + size + 1]):
                end += got
        if end == start + size + 1:
            extra = stream.read()
            batch.reserve(end - start + len(extra) + 1)
            batch.buf[end : end + len(extra)] = extra
            end += len(extra)
        if end > start and batch.buf[end - 1] != 10:  # a part always ends with a newline; only defensive
            batch.buf[end] = 10
            end += 1
        with memoryview(batch.buf) as view:
            self.out.write(view[start:end])
        batch.used = end
        batch.pieces.append((end, chunk))
        if batch.used >= SCAN_BYTES:
            self._hand_over()

    def _hand_over(self) -> None:
        batch = self._batch
        if not batch.used:
            return
        batch.base = self._written
        self._written += batch.used
        self._full.put(batch)
        self._batch = self._free.get()  # waits while every buffer is being scanned or waiting

    def _scan_batches(self) -> None:
        while (batch := self._full.get()) is not None:
            if self._failure is None:  # after a failure, only recycle so the writer never blocks
                try:
                    self._scan(batch)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self._failure = exc
            batch.used, batch.pieces = 0, []
            self._free.put(batch)

    def _scan(self, batch: _Batch) -> None:
        with memoryview(batch.buf) as whole:
            self._scan_view(whole[: batch.used], batch)

    def _scan_view(self, data: memoryview, batch: _Batch) -> None:
        cuts = [end for end, _ in batch.pieces]
        if np is not None:
            if self._scratch is None or len(self._scratch) < len(data):
                self._scratch = np.empty(len(batch.buf), bool)
            per_piece, ok, hashes, offsets = _scan_bulk(data, self._head, cuts, self._scratch)
        else:
            per_piece, ok, hashes, offsets = _scan_lines(data, self._head, cuts)
        for (_, chunk), lines in zip(batch.pieces, per_piece):
            self.chunk_records[chunk] = self.chunk_records.get(chunk, 0) + lines
        lines = sum(per_piece)
        self.report.records += lines
        self.report.ok += ok
        self.report.errors += lines - ok
        self.report.bytes += len(data)
        self.ids.add(hashes, offsets, batch.base)


# -- scanning: (lines, ok lines, custom_id hashes, where each custom_id starts) --------------
def hash_custom_id(raw: bytes) -> int:
    """A 64-bit hash of a custom_id as it appears (JSON-escaped) between its quotes.

    Short ids without escapes use the same function as the bulk scan (``_mix_rows``);
    others use blake2b. Which one is chosen depends on the id alone, so equal ids
    always get equal hashes.
    """
    if np is not None and len(raw) < ID_WIDTH and b"\\" not in raw:
        row = np.zeros((1, ID_WIDTH), np.uint8)
        row[0, : len(raw)] = np.frombuffer(raw, np.uint8)
        return int(_mix_rows(row, np.array([len(raw)]))[0])
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def _scan_lines(data, head: bytes, cuts: list[int]) -> tuple[list[int], int, array, array]:
    """The portable scan: one regex search per line. ``cuts``: end offsets of pieces to count lines of."""
    data = bytes(data)
    hashes, offsets = array("Q"), array("Q")
    per_piece = [data.count(b"\n", a, b) for a, b in zip([0, *cuts], cuts)]
    for m in _CUSTOM_ID.finditer(data):
        hashes.append(hash_custom_id(m.group(1)))
        offsets.append(m.start(1))
    return per_piece, data.count(_OK), hashes, offsets


if np is not None:
    _U64 = np.uint64
    _M1, _M2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
    _S33 = _U64(33)
    _LANES = ID_WIDTH // 8
    # Masks keeping the first k bytes of a little-endian 8-byte lane, k = 0..8.
    _KEEP = np.array([(1 << (8 * k)) - 1 for k in range(9)], np.uint64)

    def _u64(pattern: bytes, at: int = 0) -> "np.uint64":
        return np.frombuffer(pattern[at : at + 8].ljust(8, b"\0"), np.uint64)[0]

    _OK_LANES = (_u64(b"\0" + _OK), _u64(b"\0" + _OK, 8))  # 16 bytes ending at the newline
    _LINK_LANES = (_u64(_LINK), _u64(_LINK, 8), _u64(_LINK, 16))  # 17 bytes: 16 + one quote
    _ID_OPEN = _u64(_HEAD)  # '{"id": "'
    _LINK_BYTES = np.frombuffer(_LINK, np.uint8)


def _mix_lanes(lanes, lengths):
    """Hash rows of little-endian 8-byte lanes (zero past ``lengths`` bytes): murmur3's fmix64, chained."""
    h = lengths.astype(np.uint64) * _M2
    for j in range(lanes.shape[1]):
        h ^= lanes[:, j]
        h ^= h >> _S33
        h *= _M1
        h ^= h >> _S33
        h *= _M2
        h ^= h >> _S33
    return h


def _mix_rows(rows, lengths):
    """Hash rows of ``ID_WIDTH`` bytes, zero past each row's length."""
    return _mix_lanes(np.ascontiguousarray(rows).view(np.uint64), lengths)


def _line_ends(raw, scratch=None):
    """Positions of every newline in ``raw``, ascending.

    Cheaper than ``flatnonzero(raw == 10)``: the comparison is packed into 64-bit
    words and only the (few) nonzero words are visited, lowest bit first.
    """
    is_newline = np.equal(raw, 10, out=None if scratch is None else scratch[: len(raw)])
    bits = np.packbits(is_newline, bitorder="little")
    if len(bits) % 8:
        bits = np.concatenate([bits, np.zeros(8 - len(bits) % 8, np.uint8)])
    words = bits.view(np.uint64)
    where = np.flatnonzero(words)
    word, base = words[where], where * 64
    found = []
    while len(word):  # one round per newline in the same 64-byte word: once for lines of 64+ bytes
        low = word & (~word + _U64(1))
        found.append(base + np.log2(low.astype(np.float64)).astype(np.int64))
        word ^= low
        more = word != 0
        word, base = word[more], base[more]
    if len(found) == 1:
        return found[0]
    ends = np.concatenate(found) if found else np.empty(0, np.int64)
    ends.sort()
    return ends


def _has_byte(lanes, byte: int):
    """Per 8-byte lane: nonzero iff it holds ``byte``; then its lowest flagged byte is the first such byte."""
    x = lanes ^ _U64(0x0101010101010101 * byte)
    return (x - _U64(0x0101010101010101)) & ~x & _U64(0x8080808080808080)


def _first_flagged(flags):
    """Per row of ``_has_byte`` lanes: (any flagged, byte index of the first flagged byte)."""
    flagged = flags != 0
    lane = flagged.argmax(axis=1)
    word = flags[np.arange(len(flags)), lane]
    low = word & (~word + _U64(1))
    byte = np.log2(np.where(low != 0, low, 1).astype(np.float64)).astype(np.int64) >> 3
    return flagged.any(axis=1), lane * 8 + byte


def _scan_bulk(data, head: bytes, cuts: list[int], scratch=None):
    """The numpy scan: each line's first bytes and last 16 bytes are copied out as rows, no per-line Python.

    A line starts ``{"id": "batch_req_<run>_<source>_<offset>", "custom_id": "<id>"``
    (``worker.output``). Rows are grouped by the width of ``<source>_<offset>`` (a
    few groups per batch) so the custom_id sits at one column per group. A line that
    does not look like that (it always does in a chunkpilot run), or whose custom_id
    is long or escaped, goes through the regex.
    """
    raw = np.frombuffer(data, np.uint8)
    ends = _line_ends(raw, scratch)
    n = len(ends)
    per_piece = np.diff(np.searchsorted(ends, cuts), prepend=0).tolist()
    width = len(head) + _ID_DIGITS + len(_LINK) + ID_WIDTH
    if n == 0 or len(data) < width + 16:
        _, ok, hashes, offsets = _scan_lines(data, head, cuts)
        return per_piece, ok, np.asarray(hashes, np.uint64), np.asarray(offsets, np.int64)
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    windows = np.lib.stride_tricks.sliding_window_view
    tail = windows(raw, 16)[np.clip(ends - 15, 0, len(raw) - 16)].view(np.uint64)
    ok = int(np.count_nonzero(((tail[:, 0] & ~_U64(0xFF)) == _OK_LANES[0]) & (tail[:, 1] == _OK_LANES[1]) & (ends >= 15)))

    rows = windows(raw, width)[np.minimum(starts, len(raw) - width)]
    shaped = (ends - starts > width) & (rows[:, :8].view(np.uint64)[:, 0] == _ID_OPEN)
    digits = rows[:, len(head) : len(head) + _ID_DIGITS] == 34
    quote = digits.argmax(axis=1)  # where the id's closing quote is, relative to the digits
    shaped &= digits[np.arange(n), quote]

    hashes = np.zeros(n, np.uint64)
    offsets = starts + len(head) + quote + len(_LINK)
    bulk = np.zeros(n, bool)
    for q in np.unique(quote[shaped]).tolist():
        group = np.flatnonzero(shaped & (quote == q))
        at = len(head) + q
        linked = (rows[group, at : at + len(_LINK)] == _LINK_BYTES).all(axis=1)
        group = group[linked]
        lanes = np.ascontiguousarray(rows[group, at + len(_LINK) : at + len(_LINK) + ID_WIDTH]).view(np.uint64)
        closed, length = _first_flagged(_has_byte(lanes, 34))  # the closing quote, if short and unescaped
        clean = closed & ~(_has_byte(lanes, 92) != 0).any(axis=1)
        group, lanes, length = group[clean], lanes[clean], length[clean]
        lanes &= _KEEP[np.clip(length[:, None] - 8 * np.arange(_LANES), 0, 8)]
        hashes[group] = _mix_lanes(lanes, length)
        bulk[group] = True
    if bulk.all():
        return per_piece, ok, hashes, offsets
    keep = np.ones(n, bool)
    for i in np.flatnonzero(~bulk):
        m = _CUSTOM_ID.search(data, int(starts[i]), int(ends[i]) + 1)
        if m is None:
            keep[i] = False
            continue
        hashes[i] = hash_custom_id(bytes(m.group(1)))
        offsets[i] = m.start(1)
    return per_piece, ok, hashes[keep], offsets[keep]


# -- counting duplicates in bounded memory ---------------------------------------------------
class DuplicateCounter:
    """Exactly how many distinct hashes occur more than once, in memory bounded by ``budget``.

    ``add`` takes hashes and the output offsets they were seen at. Up to ``budget``
    of them stay in memory; when more are ``expected``, they are spilled as they come
    to temporary files, one per hash range, sized to fit the budget, and each range
    is counted alone at ``finish``. Costs 16 bytes of temporary disk per record
    beyond the budget, and no extra pass over the output.
    """

    SPILL_EVERY = 1 << 16

    def __init__(self, expected: int, budget: int = ID_BUDGET):
        self.partitions = 1 if expected <= budget else -(-expected * 5 // 4 // budget)
        self._held: list[tuple] = []
        self._held_count = 0
        self._tmp = tempfile.TemporaryDirectory(prefix="chunkpilot-collect-") if self.partitions > 1 else None
        self._files = [open(os.path.join(self._tmp.name, f"{i}.bin"), "wb") for i in range(self.partitions)] if self._tmp else []

    def __enter__(self) -> "DuplicateCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def add(self, hashes, offsets, base: int) -> None:
        if len(hashes):
            self._held.append((hashes, offsets, base))
            self._held_count += len(hashes)
        if self._files and self._held_count >= self.SPILL_EVERY:
            self._spill()

    def _pairs(self):
        """Held values as one (n, 2) uint64 array of (hash, absolute offset) (numpy) or an array('Q')."""
        if np is not None:
            parts = [np.column_stack((np.asarray(h, np.uint64), np.asarray(o, np.uint64) + np.uint64(b)))
                     for h, o, b in self._held]
            pairs = np.concatenate(parts) if parts else np.empty((0, 2), np.uint64)
        else:
            pairs = array("Q")
            for h, o, b in self._held:
                for x, y in zip(h, o):
                    pairs.extend((x, y + b))
        self._held, self._held_count = [], 0
        return pairs

    def _spill(self) -> None:
        pairs = self._pairs()
        if np is not None:
            part = ((pairs[:, 0] >> np.uint64(32)) * np.uint64(self.partitions)) >> np.uint64(32)
            order = np.argsort(part, kind="stable")
            pairs, bounds = pairs[order], np.searchsorted(part[order], np.arange(self.partitions + 1))
            for i, f in enumerate(self._files):
                pairs[bounds[i] : bounds[i + 1]].tofile(f)
        else:
            split = [array("Q") for _ in self._files]
            for j in range(0, len(pairs), 2):
                split[((pairs[j] >> 32) * self.partitions) >> 32].extend(pairs[j : j + 2])
            for f, values in zip(self._files, split):
                values.tofile(f)

    def finish(self, examples: int = 5) -> tuple[int, list[int]]:
        """(distinct hashes seen more than once, output offsets of the first ``examples`` of them)."""
        if not self._files:
            return _count_duplicates([self._pairs()], examples)
        self._spill()
        for f in self._files:
            f.close()
        count, firsts = 0, []
        for i in range(self.partitions):
            path = os.path.join(self._tmp.name, f"{i}.bin")
            if np is not None:
                loaded = np.fromfile(path, np.uint64).reshape(-1, 2)
            else:
                loaded = array("Q")
                with open(path, "rb") as f:
                    loaded.frombytes(f.read())
            n, first = _count_duplicates([loaded], examples)
            count += n
            firsts = sorted(firsts + first)[:examples]
            os.unlink(path)
        self._files = []
        return count, firsts


def _count_duplicates(chunks, examples: int) -> tuple[int, list[int]]:
    """(distinct hashes occurring more than once, smallest first-occurrence offsets of up to ``examples`` of them).

    ``chunks`` hold (hash, offset) pairs in output order.
    """
    if np is not None:
        pairs = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        if len(pairs) < 2:
            return 0, []
        h = pairs[:, 0]
        ordered = np.sort(h)
        same = ordered[1:] == ordered[:-1]
        first_of_run = same & np.r_[True, ~same[:-1]]
        count = int(np.count_nonzero(first_of_run))
        if not count or not examples:
            return count, []
        duplicated = ordered[1:][first_of_run]
        at = np.minimum(np.searchsorted(duplicated, h), len(duplicated) - 1)
        hits = np.flatnonzero(duplicated[at] == h)  # every record with a duplicated id, in output order
        _, first = np.unique(h[hits], return_index=True)
        return count, sorted(int(x) for x in pairs[hits[first], 1])[:examples]
    seen: dict[int, list[int]] = {}
    for pairs in chunks:
        for j in range(0, len(pairs), 2):
            entry = seen.setdefault(pairs[j], [pairs[j + 1], 0])
            entry[0] = min(entry[0], pairs[j + 1])
            entry[1] += 1
    dups = sorted(first for first, n in seen.values() if n > 1)
    return len(dups), dups[:examples]


def collect_to_file(run: OpenRun, path: str, allow_partial: bool = False) -> CollectReport:
    """Collect into ``path`` atomically: a failed collect never leaves a half-written file behind."""
    tmp = f"{path}.partial"
    try:
        with open(tmp, "wb") as out:
            report = collect(run, out, allow_partial)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if report.duplicate_example_offsets:
        report.duplicate_examples = custom_ids_at(path, report.duplicate_example_offsets)
    return report


def custom_ids_at(path: str, offsets: list[int]) -> list[str]:
    """The custom_ids that start at ``offsets`` of a collected file (a few small reads)."""
    found = []
    with open(path, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            m = _ID_VALUE.match(f.read(64 * 1024))
            if m:
                found.append(m.group(1).decode("utf-8", "replace"))
    return found
