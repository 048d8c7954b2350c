"""A chunk's committed answers read back in input order, each record once: what collect merges
and what a pipeline's next step reads (``chunkpilot.pipeline.read``)."""

from __future__ import annotations

import json
from typing import Iterator

from chunkpilot import layout
from chunkpilot.layout import PartName
from chunkpilot.merge import Copy, Keep, merge_plan
from chunkpilot.output import position_of_id
from chunkpilot.spec import Position
from chunkpilot.store import ObjectInfo, Store


def output_lines(store: Store, parts: list[tuple[PartName, ObjectInfo]], end: Position | None = None
                 ) -> Iterator[tuple[Position, dict]]:
    """A chunk's output lines, parsed, each record once, in order (the merge plan, read line by line).
    ``end``: where a split chunk ends now (``chunks.split_ends``); lines past it are its child's."""
    for step in merge_plan(parts, read_all=True, end=end):
        if not isinstance(step, (Copy, Keep)):
            continue
        with store.open(step.item.key) as stream:
            for line in stream:
                obj = json.loads(line)
                position = position_of_id(obj.get("id"))
                if (step.after is None or position >= step.after) and (step.before is None or position < step.before):
                    yield position, obj


def chunk_parts(run_store: Store, chunk: str) -> list[tuple[PartName, ObjectInfo]]:
    """The committed parts of one chunk, from one listing of its folder."""
    out = []
    for obj in run_store.list(layout.outputs(chunk)):
        part = PartName.parse(layout.parse_output(obj.key)[1])
        if part is not None:
            out.append((part, obj))
    return out
