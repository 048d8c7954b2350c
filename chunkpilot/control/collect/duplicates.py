"""Duplicate custom_ids of the records a collect writes, the same in every output format.

Counted as the OpenAI format counts them: a done chunk's custom_ids from its done marker's
hashes (nothing else read), a chunk not done (``--allow-partial``) from its committed parts'
lines. Examples are the custom_ids of a few of those records, found in their chunk's merged
parts (reads at most a chunk's parts per example). Records and Parquet collects run this beside
their writing, in a thread, so it adds a marker read, not a pass over the output.
"""

from __future__ import annotations

import threading
from array import array

from chunkpilot import layout
from chunkpilot.layout import PartName
from chunkpilot.spec import custom_id_hash, encode_hashes
from chunkpilot.store import Store
from chunkpilot.control.collect.copy import parts_by_chunk
from chunkpilot.committed import output_lines
from chunkpilot.control.collect.verify import read_markers
from chunkpilot.control.dupcount import CounterProcess


def duplicate_custom_ids(store: Store, chunks: list[str], done: set[str], max_examples: int = 5) -> tuple[int, list[str]]:
    """(distinct custom_ids on more than one record, up to ``max_examples`` of them) among the
    records of ``chunks`` (in key order) that collect writes answers for."""
    with CounterProcess(max_examples) as counter:
        read_markers(store, [(i, c) for i, c in enumerate(chunks) if c in done], counter, threading.Event(), end_input=False)
        for index, (chunk, parts) in enumerate(parts_by_chunk(store, chunks)):
            if chunk not in done:
                hashes = array("Q", (custom_id_hash(str(obj["custom_id"])) for _, obj in output_lines(store, parts)))
                counter.add(encode_hashes(hashes), index << 32)
        counter.end_input()
        count, records = counter.finish()
    return count, [custom_id for record in records if (custom_id := _custom_id_of(store, chunks[record >> 32], record & 0xFFFFFFFF))]


def _custom_id_of(store: Store, chunk: str, index: int) -> str | None:
    """The custom_id of the ``index``-th record of the chunk's merged parts."""
    parts = [(p, obj) for obj in store.list(layout.outputs(chunk)) if (p := PartName.parse(obj.key.rsplit("/", 1)[-1]))]
    for i, (_, obj) in enumerate(output_lines(store, parts)):
        if i == index:
            return str(obj["custom_id"])
    return None
