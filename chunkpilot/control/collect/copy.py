"""Laying a chunk's parts into the output file: whole parts copied (in the kernel for a local
store, several GETs side by side for S3), straddling parts read and filtered line by line."""

from __future__ import annotations

import json
from array import array
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Callable, Iterable, Iterator, TypeVar

from chunkpilot import layout
from chunkpilot.errors import StoreError
from chunkpilot.layout import PartName
from chunkpilot.output import position_of_id
from chunkpilot.spec import custom_id_hash
from chunkpilot.store import ObjectInfo, Store
from chunkpilot.store.base import pwrite_all
from chunkpilot.merge import Copy, Drop, Keep, merge_plan

T = TypeVar("T")


@dataclass
class Tally:
    """What laying out one chunk wrote."""

    records: int = 0
    errors: int = 0
    bytes: int = 0
    dropped: int = 0  # records committed twice (zombies, resumes) and written once
    hashes: array = field(default_factory=lambda: array("Q"))  # custom_id hashes, only when asked


def done_chunks(store: Store, chunks: set[str]) -> set[str]:
    """Those of ``chunks`` with a done marker, from a streamed listing of keys only (no sizes: for a
    local store, no ``stat`` of each part)."""
    return {chunk for chunk, name in map(layout.parse_output, store.keys(layout.OUTPUTS))
            if name == layout.DONE_NAME and chunk in chunks}


def parts_by_chunk(store: Store, chunks: list[str]) -> Iterator[tuple[str, list[tuple[PartName, ObjectInfo]]]]:
    """(chunk, its parts) for each of ``chunks`` (in key order), from one streamed listing: only one
    chunk's parts are in memory at a time, whatever the run's size."""
    listing = ((chunk, (part, obj)) for obj in store.list(layout.OUTPUTS)
               for chunk, name in [layout.parse_output(obj.key)] if (part := PartName.parse(name)))
    return by_chunk(listing, chunks)


def by_chunk(listing: Iterable[tuple[str, T]], chunks: list[str]) -> Iterator[tuple[str, list[T]]]:
    """(chunk, its items) for each of ``chunks`` (in key order, as a listing gives them), from a
    listing's (chunk, item) pairs; other chunks' items are passed over."""
    wanted = set(chunks)
    groups = groupby(((chunk, item) for chunk, item in listing if chunk in wanted), key=lambda pair: pair[0])
    group = next(groups, None)
    for chunk in chunks:
        items = []
        if group is not None and group[0] == chunk:
            items = [item for _, item in group[1]]
            group = next(groups, None)
        yield chunk, items


def map_reads(store: Store, read: Callable, items: list) -> Iterator:
    """``read(item)`` for each item, in order, ``store.parallel_reads`` at a time and never further
    ahead than twice that, so results wait in memory only a few at a time."""
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


class Copier:
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

    def __enter__(self) -> "Copier":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            try:
                while self._window:
                    self._window.popleft().result()
            finally:
                self._pool.shutdown(cancel_futures=True)


def lay_out_chunk(store: Store, parts: list[tuple[PartName, ObjectInfo]], fd: int, offset: int, copier: Copier,
                  *, hash_ids: bool, end=None) -> Tally:
    """Write one chunk at ``offset`` of the output as its merge plan says. ``hash_ids``: read every
    part, hashing each record's custom_id (for a chunk without a done marker to take them from).
    ``end``: where a split chunk ends now (``merge_plan``)."""
    tally = Tally()
    for step in merge_plan(parts, read_all=hash_ids, end=end):
        if isinstance(step, Drop):
            tally.dropped += step.part.records
        elif isinstance(step, Copy):
            copier.copy(step.item.key, offset + tally.bytes, step.item.size)
            tally.records += step.part.records
            tally.errors += step.part.errors
            tally.bytes += step.item.size
        elif isinstance(step, Keep):
            _write_kept(store, step, fd, offset, tally, hash_ids)
    return tally


def _write_kept(store: Store, step: Keep, fd: int, offset: int, tally: Tally, hash_ids: bool) -> None:
    """Write the lines of a part at or past ``step.after``, counting them (and hashing custom_ids if asked)."""
    kept = []
    with store.open(step.item.key) as stream:
        for line in stream:
            obj = json.loads(line)
            position = position_of_id(obj.get("id"))
            if (step.after is not None and position < step.after) or (step.before is not None and position >= step.before):
                tally.dropped += 1
                continue
            line = line if line.endswith(b"\n") else line + b"\n"
            kept.append(line)
            tally.errors += obj.get("error") is not None
            if hash_ids:
                tally.hashes.append(custom_id_hash(str(obj["custom_id"])))
    tally.bytes += pwrite_all(fd, b"".join(kept), offset + tally.bytes)
    tally.records += len(kept)
