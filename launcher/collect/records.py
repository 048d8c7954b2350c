"""Answers merged back into the user's records: ``collect --format records``.

One line per non-blank input line, in input order: the input record with all its fields
unchanged, plus the answer under the output key and ``<key>_error`` (``{code, message}`` or
null). An input line that is not a record keeps its line: ``<key>_input`` holds its text.

Memory stays flat: each chunk's input is read back in order (its format's ``records``) beside
the chunk's merged output lines (the parts, by the merge plan), and the two are joined by
position as they stream. Nothing is held but the current record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from chunkpilot import layout
from chunkpilot.errors import OutputError
from chunkpilot.formats import Record, get_format
from chunkpilot.layout import PartName
from chunkpilot.output import answer_of, position_of_id
from chunkpilot.spec import ChunkManifest, Position, RunSpec
from chunkpilot.store import ObjectInfo, Store
from launcher.collect.copy import parts_by_chunk
from launcher.collect.merge import Copy, Keep, merge_plan

NOT_ANSWERED = {"code": "not_answered", "message": "its chunk is not done: collected with --allow-partial"}


@dataclass(frozen=True)
class Merged:
    """One output row: the input record (None for a line that is no record) and its outcome."""

    position: Position
    fields: dict[str, Any] | None
    answer: Any
    error: dict[str, Any] | None
    raw: bytes | None = None  # the input line, for one that is no record


def output_lines(store: Store, parts: list[tuple[PartName, ObjectInfo]]) -> Iterator[tuple[Position, dict]]:
    """A chunk's output lines, parsed, each record once, in order (the merge plan, read line by line)."""
    for step in merge_plan(parts, read_all=True):
        if not isinstance(step, (Copy, Keep)):
            continue
        with store.open(step.item.key) as stream:
            for line in stream:
                obj = json.loads(line)
                position = position_of_id(obj.get("id"))
                if step.after is None or position >= step.after:
                    yield position, obj


@dataclass
class Tally:
    blank: int = 0
    missing: dict[str, int] | None = None  # chunk -> records of a done chunk without an answer


def merged_records(spec: RunSpec, run_store: Store, done: set[str], tally: Tally) -> Iterator[Merged]:
    """Every non-blank input record of the run, in order, joined with its answer."""
    fmt = get_format(spec.input_format)
    tally.missing = {}
    chunks = sorted(spec.chunk_ids, key=lambda c: c + "/")
    for chunk, parts in parts_by_chunk(run_store, chunks):
        manifest = ChunkManifest.from_json(run_store.get(layout.manifest(chunk)))
        outputs = output_lines(run_store, parts) if chunk in done else iter(())
        pending = next(outputs, None)
        for record in fmt.records(spec.inputs, manifest):
            if record.blank:
                tally.blank += 1
                continue
            while pending is not None and pending[0] < record.position:
                pending = next(outputs, None)  # an answer to no record of this input: not ours to write
            if pending is not None and pending[0] == record.position:
                answer, error = answer_of(pending[1])
                pending = next(outputs, None)
            elif chunk not in done:
                answer, error = None, NOT_ANSWERED
            else:
                answer, error = None, {"code": "not_answered", "message": "no answer was committed for this record"}
                tally.missing[chunk] = tally.missing.get(chunk, 0) + 1
            yield _merged(record, answer, error)


def _merged(record: Record, answer: Any, error: dict[str, Any] | None) -> Merged:
    return Merged(record.position, record.fields, answer, error, record.raw if record.fields is None else None)


class RecordsJsonWriter:
    """Merged records as JSON lines."""

    def __init__(self, file, output_key: str):
        self.file, self.key = file, output_key
        self.error_key, self.input_key = f"{output_key}_error", f"{output_key}_input"

    def write(self, row: Merged) -> int:
        if row.fields is None:
            out: dict[str, Any] = {self.input_key: (row.raw or b"").decode("utf-8", "replace").rstrip("\r\n")}
        else:
            clash = [k for k in (self.key, self.error_key) if k in row.fields]
            if clash:
                raise OutputError(
                    f"the record at {row.position} already has a field {clash[0]!r}: collect with another "
                    f"--output-key (the answers' field), e.g. --output-key answer"
                )
            out = dict(row.fields)
        out[self.key] = row.answer
        out[self.error_key] = row.error
        data = json.dumps(out, ensure_ascii=False).encode() + b"\n"
        self.file.write(data)
        return len(data)
