"""Merge a run's committed parts into one output, in input order, each record exactly once.

Collect verifies the output without reading it: the worker wrote what there is to
check into part names (interval, record and error-line counts) and into each
chunk's ``_SUCCESS`` (record count, a hash of every record's custom_id).

Parts of a chunk are visited in order of their first key; each holds every record
of its interval, sorted, so the merge keeps only "how far have we written"
(``reach``): a part entirely past it is copied whole to its place in the output
(``Store.write_into``: inside the kernel for a local store, several GETs side by
side for S3), a part entirely before it is a duplicate (a zombie's or a resumed
attempt's), and only a part straddling it is read line by line.

Checked: every chunk is done (or ``allow_partial``); each chunk's records written
equal its marker's count and its number of custom_id hashes; each part copied has
the size the listing gave. Duplicate custom_ids are counted from the markers'
hashes while the parts are copied: a reader thread hands them to a counter thread
(``DuplicateCounter``), which keeps a fixed number in memory and spills the rest to
temporary files, so memory stays flat whatever the record count. Records are
numbered ``chunk << 32 | position in the chunk``, so the order in which hashes
arrive does not matter. Only chunks without a marker (``allow_partial``) have their
lines read, to hash their custom_ids here.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from array import array
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterator

from launcher.errors import IncompleteRunError, OutputError, StoreError
from launcher.runs import OpenRun
from launcher.spec import PartName, SuccessMarker, custom_id_hash, decode_hashes
from launcher.store import ObjectInfo, Store
from launcher.store.base import pwrite_all
from worker.output import is_ok_line, key_of_line

ID_BUDGET = 1 << 20  # custom_id hashes held in memory (8-16 bytes each) before spilling to disk
FEED_DEPTH = 8  # markers' hashes waiting for the counter: bounds memory whatever the chunk count


@dataclass
class CollectReport:
    records: int = 0
    ok: int = 0
    errors: int = 0
    skipped_blank: int = 0
    duplicates_dropped: int = 0  # records committed twice (zombies, resumes) written once
    duplicate_custom_ids: int = 0  # distinct custom_ids that appear on more than one record
    duplicate_examples: list[str] = field(default_factory=list)
    duplicate_example_records: list[int] = field(default_factory=list)  # record numbers (chunk << 32 | position)
    incomplete_chunks: list[str] = field(default_factory=list)
    mismatched_chunks: list[str] = field(default_factory=list)  # output count != _SUCCESS count
    bytes: int = 0
    chunk_offsets: list[int] = field(default_factory=list, repr=False)  # where each chunk starts in the output


@dataclass
class _Tally:
    """What merging one chunk wrote."""

    records: int = 0
    errors: int = 0
    bytes: int = 0
    dropped: int = 0
    hashes: array = field(default_factory=lambda: array("Q"))  # only for chunks read line by line


def collect(run: OpenRun, path: str, allow_partial: bool = False, max_examples: int = 5) -> CollectReport:
    """Write the run's merged output to ``path``; refuse if a chunk is incomplete unless ``allow_partial``.

    Atomic: the output appears whole under ``path`` or not at all.
    """
    chunks = sorted(run.spec.chunk_ids, key=lambda c: c + "/")  # the order a listing of out/ gives them
    survey = _survey(run.run_store, chunks)
    incomplete = [c for c in chunks if survey[c].done is None]
    if incomplete and not allow_partial:
        shown = ", ".join(incomplete[:10])
        more = "" if len(incomplete) <= 10 else f" and {len(incomplete) - 10} more"
        raise IncompleteRunError(
            f"{len(incomplete)} of {len(chunks)} chunk(s) are not done ({shown}{more}): "
            "run `launcher watch` to finish them, or pass --allow-partial"
        )
    tmp = f"{path}.partial"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            report = _collect_into(run.run_store, chunks, survey, fd, max_examples)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # the output's own file system: full, read-only, a missing folder
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    report.incomplete_chunks = incomplete
    if report.duplicate_example_records:
        mismatched = {chunks.index(c) for c in report.mismatched_chunks}  # positions there are not the marker's
        report.duplicate_examples = custom_ids_at(
            path, [r for r in report.duplicate_example_records if r >> 32 not in mismatched], report.chunk_offsets
        )
    return report


@dataclass
class _ChunkSurvey:
    done: str | None = None  # the key of its _SUCCESS
    records: int = 0  # in its parts, overlaps counted twice: a bound that sizes the duplicate counter


def _survey(store: Store, chunks: list[str]) -> dict[str, _ChunkSurvey]:
    """One streamed listing of ``out/``: which chunks are done, how many records their parts hold."""
    survey = {chunk: _ChunkSurvey() for chunk in chunks}
    for chunk, filename, obj in _outputs(store, survey):
        if filename == "_SUCCESS":
            survey[chunk].done = obj.key
        elif (part := PartName.parse(filename)) is not None:
            survey[chunk].records += part.records
    return survey


def _outputs(store: Store, chunks) -> Iterator[tuple[str, str, ObjectInfo]]:
    """(chunk, file name, object) for every object under ``out/<chunk>/`` of ``chunks``, in key order."""
    for obj in store.list("out/"):
        _, chunk, filename = (obj.key.split("/", 2) + ["", ""])[:3]
        if chunk in chunks:
            yield chunk, filename, obj


def _parts_by_chunk(store: Store, chunks: list[str]) -> Iterator[tuple[str, list[tuple[PartName, ObjectInfo]]]]:
    """(chunk, its parts) for each of ``chunks`` (in key order), from a second streamed listing:
    only one chunk's parts are in memory at a time, whatever the run's size."""
    groups = groupby(_outputs(store, set(chunks)), key=lambda item: item[0])
    group = next(groups, None)
    for chunk in chunks:
        parts = []
        if group is not None and group[0] == chunk:
            parts = [(part, obj) for _, filename, obj in group[1] if (part := PartName.parse(filename))]
            group = next(groups, None)
        yield chunk, parts


def _collect_into(store: Store, chunks: list[str], survey: dict[str, _ChunkSurvey], fd: int,
                  max_examples: int) -> CollectReport:
    """Three threads: this one lays out and copies parts; a reader hands markers' hashes to a
    counter. Markers only verify, so copying never waits for them."""
    report = CollectReport()
    done = [(index, chunk) for index, chunk in enumerate(chunks) if survey[chunk].done is not None]
    expected = sum(s.records for s in survey.values())
    feed: queue.Queue = queue.Queue(FEED_DEPTH)  # (hashes or their base64 text, first record number); None per producer
    stop = threading.Event()
    with ThreadPoolExecutor(2, thread_name_prefix="collect") as pool:
        counted = pool.submit(_count_duplicates_of, feed, expected, max_examples, producers=2)
        markers = pool.submit(_read_markers, store, survey, done, feed, stop)
        partial = len(done) < len(chunks)
        if not partial:
            feed.put(None)  # this thread has nothing to count: the count ends once the markers are read
        written: dict[str, int] = {}
        try:
            with _Copier(store, fd) as copier:
                for index, (chunk, listed) in enumerate(_parts_by_chunk(store, chunks)):
                    read_ids = survey[chunk].done is None
                    parts = sorted(listed, key=lambda p: (p[0].first, _neg(p[0].end)))
                    report.chunk_offsets.append(report.bytes)
                    tally = _plan_chunk(store, parts, fd, report.bytes, copier, read_ids=read_ids)
                    if read_ids:
                        feed.put((tally.hashes, index << 32))
                    written[chunk] = tally.records
                    report.records += tally.records
                    report.errors += tally.errors
                    report.ok += tally.records - tally.errors
                    report.bytes += tally.bytes
                    report.duplicates_dropped += tally.dropped
        except BaseException:
            stop.set()
            raise
        finally:
            if partial:
                feed.put(None)
        for chunk, marker in markers.result().items():
            report.skipped_blank += marker.skipped_blank
            if not written[chunk] == marker.records == marker.hashes:
                report.mismatched_chunks.append(chunk)
        report.duplicate_custom_ids, report.duplicate_example_records = counted.result()
    return report


@dataclass(frozen=True)
class _MarkerCounts:
    """What collect keeps of a chunk's ``_SUCCESS``: its hashes go to the counter, not into memory."""

    records: int
    skipped_blank: int
    hashes: int


def _read_markers(store: Store, survey: dict[str, _ChunkSurvey], done: list[tuple[int, str]],
                  feed: queue.Queue, stop: threading.Event) -> dict[str, _MarkerCounts]:
    """Read done chunks' markers in chunk order, handing each one's hashes to ``feed`` as it comes."""
    counts = {}
    try:
        for (index, chunk), raw in zip(done, _map_reads(store, lambda item: store.get(survey[item[1]].done), done)):
            if stop.is_set():
                break
            try:
                marker = SuccessMarker.from_json(raw)
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{store.uri}/{survey[chunk].done} is not a done marker chunkpilot wrote: {exc}") from exc
            counts[chunk] = _MarkerCounts(marker.records, marker.skipped_blank, _hash_count(marker.custom_id_hashes))
            feed.put((marker.custom_id_hashes, index << 32))
    finally:
        feed.put(None)
    return counts


def _map_reads(store: Store, read, items: list):
    """``read(item)`` for each item, in order, ``store.parallel_reads`` at a time and never
    further ahead than twice that, so results wait in memory only a few at a time."""
    if store.parallel_reads <= 1 or len(items) <= 1:
        yield from map(read, items)
        return
    with ThreadPoolExecutor(store.parallel_reads, thread_name_prefix="collect-read") as pool:
        window: deque = deque()
        for item in items:
            window.append(pool.submit(read, item))
            if len(window) >= 2 * store.parallel_reads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


class _Copier:
    """Copies whole parts to their places in the output as they are laid out: right away for a
    store read with system calls, ``parallel_reads`` at a time for a remote one (a bounded window)."""

    def __init__(self, store: Store, fd: int):
        self.store, self.fd = store, fd
        self._pool = ThreadPoolExecutor(store.parallel_reads, thread_name_prefix="collect-copy") if store.parallel_reads > 1 else None
        self._window: deque = deque()

    def copy(self, key: str, at: int, size: int) -> None:
        if self._pool is None:
            return self._copy(key, at, size)
        self._window.append(self._pool.submit(self._copy, key, at, size))
        while len(self._window) > 2 * self.store.parallel_reads:
            self._window.popleft().result()

    def _copy(self, key: str, at: int, size: int) -> None:
        copied = self.store.write_into(key, self.fd, at)
        if copied != size:
            raise StoreError(f"{self.store.uri}/{key} changed while being collected ({copied} bytes, listed {size})")

    def __enter__(self) -> "_Copier":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            try:
                while self._window:
                    self._window.popleft().result()
            finally:
                self._pool.shutdown(cancel_futures=True)


def _count_duplicates_of(feed: queue.Queue, expected: int, max_examples: int, producers: int) -> tuple[int, list[int]]:
    """Count what ``feed`` brings ((hashes, first record number) items) until each producer has
    sent its None; decoding markers' hashes here keeps that work off the copying thread. On a
    failure the feed is still drained, so no producer ever blocks."""
    ended = 0
    try:
        with DuplicateCounter(expected) as ids:
            while ended < producers:
                item = feed.get()
                if item is None:
                    ended += 1
                    continue
                hashes, first = item
                ids.add(decode_hashes(hashes) if isinstance(hashes, str) else hashes, first)
            return ids.finish(max_examples)
    except BaseException:
        while ended < producers:
            ended += feed.get() is None
        raise


def _hash_count(encoded: str) -> int:
    """How many hashes ``encode_hashes`` text holds, without decoding it."""
    return (len(encoded) // 4 * 3 - encoded[-2:].count("=")) // 8 if encoded else 0


def _neg(key: tuple[int, int]) -> tuple[int, int]:
    return (-key[0], -key[1])


def _plan_chunk(store: Store, parts: list[tuple[PartName, ObjectInfo]], fd: int, offset: int,
                copier: "_Copier", *, read_ids: bool) -> _Tally:
    """Lay one chunk out at ``offset`` of the output: whole parts go to ``copier``; parts that
    straddle what is already laid out (or whose ids must be read) are written line by line."""
    tally = _Tally()
    reach: tuple[int, int] | None = None
    for part, info in parts:
        if reach is not None and part.end <= reach:
            tally.dropped += part.records
            continue
        if (reach is None or part.first >= reach) and not read_ids:
            copier.copy(info.key, offset + tally.bytes, info.size)
            tally.records += part.records
            tally.errors += part.errors
            tally.bytes += info.size
        else:
            _write_lines(store, info, reach, fd, offset, tally, read_ids)
        reach = part.end if reach is None else max(reach, part.end)
    return tally


def _write_lines(store: Store, info: ObjectInfo, reach, fd: int, offset: int, tally: _Tally, read_ids: bool) -> None:
    """Write the lines of a part at or past ``reach``, counting them (and hashing custom_ids if asked)."""
    kept = []
    with store.open(info.key) as stream:
        for line in stream:
            if reach is not None and key_of_line(line) < reach:
                tally.dropped += 1
                continue
            line = line if line.endswith(b"\n") else line + b"\n"
            kept.append(line)
            tally.errors += not is_ok_line(line)
            if read_ids:
                tally.hashes.append(custom_id_hash(json.loads(line)["custom_id"]))
    tally.bytes += pwrite_all(fd, b"".join(kept), offset + tally.bytes)
    tally.records += len(kept)


# -- counting duplicates in bounded memory ---------------------------------------------------
class DuplicateCounter:
    """Exactly how many distinct hashes occur more than once, in memory bounded by ``budget``.

    ``add`` takes the hashes of consecutive records and the number of the first, in any
    order. Up to ``budget`` of them stay in memory; when more are ``expected``, they are
    spilled as they come to temporary files, one per hash range, sized to fit the
    budget, and each range is counted alone at ``finish``. Costs 16 bytes of temporary
    disk per record beyond the budget, and no pass over the output.
    """

    SPILL_EVERY = 1 << 16

    def __init__(self, expected: int, budget: int = ID_BUDGET):
        self.np = _numpy()
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

    def add(self, hashes, first: int) -> None:
        if len(hashes):
            self._held.append((hashes, first))
            self._held_count += len(hashes)
        if self._files and self._held_count >= self.SPILL_EVERY:
            self._spill()

    def _pairs(self):
        """Held values as one (n, 2) uint64 array of (hash, record number) (numpy) or a flat array('Q')."""
        np = self.np
        if np is not None:
            parts = [np.column_stack((np.frombuffer(h, np.uint64), np.arange(first, first + len(h), dtype=np.uint64)))
                     for h, first in self._held]
            pairs = np.concatenate(parts) if parts else np.empty((0, 2), np.uint64)
        else:
            pairs = array("Q")
            for h, first in self._held:
                for i, x in enumerate(h, first):
                    pairs.extend((x, i))
        self._held, self._held_count = [], 0
        return pairs

    def _spill(self) -> None:
        np = self.np
        pairs = self._pairs()
        if np is not None:
            part = ((pairs[:, 0] >> np.uint64(32)) * np.uint64(self.partitions)) >> np.uint64(32)
            if self.partitions <= 1 << 16:
                part = part.astype(np.uint16)  # numpy sorts 16-bit keys by radix: linear time
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
        """(distinct hashes seen more than once, record numbers of the first ``examples`` of them)."""
        np = self.np
        if not self._files:
            return self._count_held(examples) if np is not None else _count_duplicates([self._pairs()], examples, None)
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
            n, first = _count_duplicates([loaded], examples, np)
            count += n
            firsts = sorted(firsts + first)[:examples]
            os.unlink(path)
        self._files = []
        return count, firsts


    def _count_held(self, examples: int) -> tuple[int, list[int]]:
        """``finish`` for what fits in memory (numpy): one sort for the count; examples are
        looked for in record order, so the search usually stops within the first chunks."""
        np = self.np
        held = sorted(((np.frombuffer(h, np.uint64), first) for h, first in self._held), key=lambda item: item[1])
        self._held, self._held_count = [], 0
        if not held:
            return 0, []
        ordered = np.sort(np.concatenate([h for h, _ in held]))
        same = ordered[1:] == ordered[:-1]
        duplicated = ordered[1:][same & np.r_[True, ~same[:-1]]]  # each value seen twice or more, once
        found: list[int] = []
        seen: set[int] = set()
        for hashes, first in held if examples and len(duplicated) else ():
            for i in np.flatnonzero(_isin_sorted(hashes, duplicated, np)).tolist():
                if (value := int(hashes[i])) not in seen:
                    seen.add(value)
                    found.append(first + i)
                    if len(found) == examples:
                        return len(duplicated), found
        return len(duplicated), found


def _count_duplicates(chunks, examples: int, np) -> tuple[int, list[int]]:
    """(distinct hashes occurring more than once, smallest first-occurrence record numbers of up to ``examples``).

    ``chunks`` hold (hash, record number) pairs, in any order; ``np`` is numpy or None.
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
        hits = np.flatnonzero(_isin_sorted(h, duplicated, np))  # every record with a duplicated id
        hits = hits[np.argsort(pairs[hits, 1], kind="stable")]  # in record order: unique keeps each id's first
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


def _isin_sorted(hashes, values, np):
    """Mask of ``hashes`` that are in ``values`` (sorted, distinct, non-empty).

    Hashes are uniform, so a bitmap on their top bits rules out nearly all of them first;
    only those it lets through are binary-searched (a search per record is most of the
    cost of counting a few million records otherwise).
    """
    bits = min(22, len(values).bit_length() + 8)  # about 1 in 256 get through by chance
    shift = np.uint64(64 - bits)
    table = np.zeros(1 << bits, bool)
    table[values >> shift] = True
    maybe = np.flatnonzero(table[hashes >> shift])
    at = np.minimum(np.searchsorted(values, hashes[maybe]), len(values) - 1)
    mask = np.zeros(len(hashes), bool)
    mask[maybe[values[at] == hashes[maybe]]] = True
    return mask


_NUMPY: list = []


def _numpy():
    """numpy if installed (imported on first use: collect's start-up should not wait for it), else None.

    Without numpy (a launcher-only install) duplicates are counted in plain Python: slower, same results.
    """
    if not _NUMPY:
        try:
            import numpy
        except ImportError:  # pragma: no cover - exercised only without numpy
            numpy = None
        _NUMPY.append(numpy)
    return _NUMPY[0]


def custom_ids_at(path: str, records: list[int], chunk_offsets: list[int]) -> list[str]:
    """The custom_ids of records ``records`` (``chunk << 32 | position``) of a collected file.

    Each is found from the start of its chunk in the file: reads at most a chunk per example.
    """
    found = []
    with open(path, "rb") as f:
        for record in records:
            f.seek(chunk_offsets[record >> 32])
            for _ in range(record & 0xFFFFFFFF):
                f.readline()
            line = f.readline()
            if line:
                found.append(str(json.loads(line)["custom_id"]))
    return found
