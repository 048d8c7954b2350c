"""What collect checks: each chunk's records written against its done marker, and custom_ids
used by more than one record — counted from the markers' hashes, never from the output.

A reader thread reads done markers in chunk order and forwards each one's hashes to the
counter, a process of its own (``chunkpilot.control.dupcount``) that keeps a fixed number in memory and
spills the rest, so memory stays flat whatever the record count and the copy never waits for
the count. Records are numbered ``chunk << 32 | position in the chunk``, so the order in which
hashes arrive does not matter.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from chunkpilot import layout
from chunkpilot.errors import StoreError
from chunkpilot.spec import SuccessMarker
from chunkpilot.store import Store
from chunkpilot.control.collect.copy import map_reads
from chunkpilot.control.dupcount import CounterProcess


@dataclass(frozen=True)
class MarkerCounts:
    """What collect keeps of a chunk's done marker: its hashes go to the counter, not into memory."""

    records: int
    skipped_blank: int
    hashes: int

    def matches(self, written: int) -> bool:
        return written == self.records == self.hashes


def read_markers(store: Store, done: list[tuple[int, str]], counter: CounterProcess, stop: threading.Event,
                 end_input: bool) -> dict[str, MarkerCounts]:
    """Read done chunks' markers in chunk order, forwarding each one's hashes to ``counter`` as it
    comes; ``end_input`` if no one else sends hashes, so the counter finishes while parts are copied."""
    counts = {}
    for (index, chunk), raw in zip(done, map_reads(store, lambda item: store.get(layout.done_marker(item[1])), done)):
        if stop.is_set():
            break
        try:
            marker = SuccessMarker.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{store.uri}/{layout.done_marker(chunk)} is not a done marker chunkpilot wrote: {exc}") from exc
        counts[chunk] = MarkerCounts(marker.records, marker.skipped_blank, hash_count(marker.custom_id_hashes))
        counter.add(marker.custom_id_hashes, index << 32)
    if end_input and not stop.is_set():
        counter.end_input()
    return counts


def hash_count(encoded: str) -> int:
    """How many hashes ``encode_hashes`` text holds, without decoding it."""
    return (len(encoded) // 4 * 3 - encoded[-2:].count("=")) // 8 if encoded else 0


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
