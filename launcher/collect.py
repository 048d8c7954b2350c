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
hashes while the parts are copied: a reader thread forwards each marker's hashes to
a counter in a process of its own (``launcher.dupcount``), which keeps a fixed number
in memory and spills the rest to temporary files, so memory stays flat whatever the
record count and the copy never waits for the count. Records are numbered
``chunk << 32 | position in the chunk``, so the order in which hashes arrive does not
matter. Only chunks without a marker (``allow_partial``) have their lines read, to
hash their custom_ids here.
"""

from __future__ import annotations

import json
import os
import threading
from array import array
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterator

from chunkpilot.errors import IncompleteRunError, OutputError, StoreError
from launcher.runs import OpenRun
from launcher.dupcount import CounterProcess
from chunkpilot.spec import PartName, SuccessMarker, custom_id_hash, encode_hashes
from chunkpilot.store import ObjectInfo, Store
from chunkpilot.store.base import pwrite_all
from chunkpilot.output import is_ok_line, key_of_line


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
    done = _done_chunks(run.run_store, set(chunks))
    incomplete = [c for c in chunks if c not in done]
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
            report = _collect_into(run.run_store, chunks, done, fd, max_examples)
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


def collect_to(run: OpenRun, output: str, allow_partial: bool = False) -> CollectReport:
    """``collect`` into a local path, or into ``s3://bucket/key`` (merged in a local temporary
    file, then uploaded in one atomic, multipart put)."""
    if not output.startswith("s3://"):
        return collect(run, output, allow_partial)
    import tempfile

    from chunkpilot.store import split_object_uri

    store, key = split_object_uri(output)
    if not key or key.endswith("/"):
        raise OutputError(f"-o {output}: name the object to write, e.g. s3://bucket/results/run.jsonl")
    store.check_writable()
    with tempfile.TemporaryDirectory(prefix="chunkpilot-collect-") as folder:
        local = os.path.join(folder, key.rsplit("/", 1)[-1])
        report = collect(run, local, allow_partial)
        store.put_file(key, local)
    return report


def _done_chunks(store: Store, chunks: set[str]) -> set[str]:
    """Those of ``chunks`` with a ``_SUCCESS``, from a streamed listing of keys only (no sizes:
    for a local store, no ``stat`` of each part)."""
    return {chunk for chunk, name in map(_chunk_and_name, store.keys("out/")) if name == "_SUCCESS" and chunk in chunks}


def _marker_key(chunk: str) -> str:
    return f"out/{chunk}/_SUCCESS"


def _chunk_and_name(key: str) -> tuple[str, str]:
    """``out/<chunk>/<name>`` -> (chunk, name); empty strings where the key has fewer parts."""
    _, chunk, name = (key.split("/", 2) + ["", ""])[:3]
    return chunk, name


def _outputs(store: Store, chunks) -> Iterator[tuple[str, str, ObjectInfo]]:
    """(chunk, file name, object) for every object under ``out/<chunk>/`` of ``chunks``, in key order."""
    for obj in store.list("out/"):
        chunk, filename = _chunk_and_name(obj.key)
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


def _collect_into(store: Store, chunks: list[str], done_chunks: set[str], fd: int, max_examples: int) -> CollectReport:
    """This thread lays out and copies parts; a reader thread forwards markers' hashes to the
    counter's process. Markers only verify, so copying never waits for them."""
    report = CollectReport()
    done = [(index, chunk) for index, chunk in enumerate(chunks) if chunk in done_chunks]
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="collect") as pool, CounterProcess(max_examples) as counter:
        partial = len(done) < len(chunks)  # then this thread sends hashes too, and ends the counter's input
        markers = pool.submit(_read_markers, store, done, counter, stop, end_input=not partial)
        written: dict[str, int] = {}
        try:
            with _Copier(store, fd) as copier:
                for index, (chunk, listed) in enumerate(_parts_by_chunk(store, chunks)):
                    read_ids = chunk not in done_chunks
                    parts = sorted(listed, key=lambda p: (p[0].first, _neg(p[0].end)))
                    report.chunk_offsets.append(report.bytes)
                    tally = _plan_chunk(store, parts, fd, report.bytes, copier, read_ids=read_ids)
                    if read_ids:
                        counter.add(encode_hashes(tally.hashes), index << 32)
                    written[chunk] = tally.records
                    report.records += tally.records
                    report.errors += tally.errors
                    report.ok += tally.records - tally.errors
                    report.bytes += tally.bytes
                    report.duplicates_dropped += tally.dropped
        except BaseException:
            stop.set()
            counter.close()  # a reader blocked on the counter's pipe fails at once
            raise
        counts = markers.result()
        if partial:
            counter.end_input()
        for chunk, marker in counts.items():
            report.skipped_blank += marker.skipped_blank
            if not written[chunk] == marker.records == marker.hashes:
                report.mismatched_chunks.append(chunk)
        report.duplicate_custom_ids, report.duplicate_example_records = counter.finish()
    return report


@dataclass(frozen=True)
class _MarkerCounts:
    """What collect keeps of a chunk's ``_SUCCESS``: its hashes go to the counter, not into memory."""

    records: int
    skipped_blank: int
    hashes: int


def _read_markers(store: Store, done: list[tuple[int, str]], counter: CounterProcess, stop: threading.Event,
                  end_input: bool) -> dict[str, _MarkerCounts]:
    """Read done chunks' markers in chunk order, forwarding each one's hashes to ``counter`` as it
    comes; ``end_input`` if no one else sends hashes, so the counter finishes while parts are copied."""
    counts = {}
    for (index, chunk), raw in zip(done, _map_reads(store, lambda item: store.get(_marker_key(item[1])), done)):
        if stop.is_set():
            break
        try:
            marker = SuccessMarker.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{store.uri}/{_marker_key(chunk)} is not a done marker chunkpilot wrote: {exc}") from exc
        counts[chunk] = _MarkerCounts(marker.records, marker.skipped_blank, _hash_count(marker.custom_id_hashes))
        counter.add(marker.custom_id_hashes, index << 32)
    if end_input and not stop.is_set():
        counter.end_input()
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
