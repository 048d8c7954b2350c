"""``committed.output_lines``: a chunk's answers read back in order, each once, within its range."""

from __future__ import annotations

import json

from chunkpilot.committed import output_lines
from chunkpilot.layout import PartName
from chunkpilot.output import _ID_PREFIX
from chunkpilot.store import open_store


def _part(store, first: int, end: int, attempt: int = 1):
    name = PartName((0, first), (0, end), attempt, first, end - first)
    lines = "".join(json.dumps({"id": f"{_ID_PREFIX}run_0_{i}", "custom_id": f"r{i}"}) + "\n" for i in range(first, end))
    store.put(name.filename, lines.encode())
    return name, next(o for o in store.list("") if o.key.endswith(name.filename))


def test_output_lines_give_each_record_once_and_stop_at_a_split_chunks_cut(tmp_path):
    store = open_store(str(tmp_path))
    parts = [_part(store, 0, 10), _part(store, 10, 20), _part(store, 15, 30, attempt=2)]
    every = [p for p, _ in output_lines(store, parts)]
    assert every == [(0, i) for i in range(30)]
    assert [p for p, _ in output_lines(store, parts, end=(0, 18))] == [(0, i) for i in range(18)]
