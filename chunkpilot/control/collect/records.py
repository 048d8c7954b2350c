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
from chunkpilot.committed import output_lines
from chunkpilot.chunks import run_chunk_ids
from chunkpilot.errors import OutputError, StoreError
from chunkpilot.formats import Record, get_format
from chunkpilot.inputs import InputDigest
from chunkpilot.output import answer_of
from chunkpilot.spec import ChunkManifest, Position, RunSpec, SuccessMarker
from chunkpilot.store import Store
from chunkpilot.control.collect.copy import parts_by_chunk
from chunkpilot.control.collect.guard import check_digest, check_ranges

NOT_ANSWERED = {"code": "not_answered", "message": "its chunk is not done: collected with --allow-partial"}


@dataclass(frozen=True)
class Merged:
    """One output row: the input record (None for a line that is no record) and its outcome."""

    position: Position
    fields: dict[str, Any] | None
    answer: Any
    error: dict[str, Any] | None
    raw: bytes | None = None  # the input line, for one that is no record


@dataclass
class Tally:
    blank: int = 0
    missing: dict[str, int] | None = None  # chunk -> records of a done chunk without an answer


class Answers:
    """One chunk's answers in order, taken by position as the input is read alongside (``take``)."""

    def __init__(self, chunk: str, lines: Iterator[tuple[Position, dict]], done: bool, tally: "Tally"):
        self.chunk, self.lines, self.done, self.tally = chunk, lines, done, tally
        self.pending = next(lines, None)

    def take(self, position: Position) -> tuple[Any, dict[str, Any] | None]:
        """(answer, error) of the record at ``position``."""
        while self.pending is not None and self.pending[0] < position:
            self.pending = next(self.lines, None)  # an answer to no record of this input: not ours to write
        if self.pending is not None and self.pending[0] == position:
            answer, error = answer_of(self.pending[1])
            self.pending = next(self.lines, None)
            return answer, error
        if not self.done:
            return None, NOT_ANSWERED
        self.tally.missing[self.chunk] = self.tally.missing.get(self.chunk, 0) + 1
        return None, {"code": "not_answered", "message": "no answer was committed for this record"}


def chunks_with_answers(spec: RunSpec, run_store: Store, done: set[str], tally: "Tally"
                        ) -> Iterator[tuple[ChunkManifest, Answers, str]]:
    """Each chunk's manifest, in order, with the stream of its answers and the digest of its input
    bytes its worker recorded ("" for a chunk not done, or none recorded)."""
    tally.missing = {}
    chunks = run_chunk_ids(run_store, spec)  # split remainders too, in input order
    for chunk, parts in parts_by_chunk(run_store, chunks):
        manifest = ChunkManifest.from_json(run_store.get(layout.manifest(chunk)))
        check_ranges(spec, manifest)
        lines = output_lines(run_store, parts)  # a chunk not done keeps what its parts answered, as OpenAI lines do
        yield manifest, Answers(chunk, lines, chunk in done, tally), _recorded_digest(run_store, chunk, done)


def _recorded_digest(run_store: Store, chunk: str, done: set[str]) -> str:
    if chunk not in done:
        return ""
    try:
        return SuccessMarker.from_json(run_store.get(layout.done_marker(chunk))).input_digest
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{run_store.uri}/{layout.done_marker(chunk)} is not a done marker chunkpilot wrote: {exc}") from exc


def merged_records(spec: RunSpec, run_store: Store, done: set[str], tally: "Tally") -> Iterator[Merged]:
    """Every non-blank input record of the run, in order, joined with its answer. InputError (after
    the chunk's rows) if a chunk's input bytes are not those its worker answered (``guard.check_digest``)."""
    fmt = get_format(spec.input_format)
    for manifest, answers, recorded in chunks_with_answers(spec, run_store, done, tally):
        digest = InputDigest()
        for record in fmt.records(spec.inputs, manifest):
            digest.add(record.raw)
            if record.blank:
                tally.blank += 1
                continue
            yield _merged(record, *answers.take(record.position))
        check_digest(spec, manifest, recorded, digest.hexdigest())


def _merged(record: Record, answer: Any, error: dict[str, Any] | None) -> Merged:
    return Merged(record.position, record.fields, answer, error, record.raw if record.fields is None else None)


def json_value(value: Any) -> Any:
    """Values JSON has no type for, as Parquet inputs hold them: times as ISO 8601, bytes as base64,
    decimals as strings (exact)."""
    import base64
    import datetime
    import decimal

    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class RecordsJsonWriter:
    """Merged records as JSON lines."""

    def __init__(self, file, output_key: str):
        self.file, self.key = file, output_key

    def write(self, row: Merged) -> int:
        data = json.dumps(record_with_answer(row, self.key), ensure_ascii=False, default=json_value).encode() + b"\n"
        self.file.write(data)
        return len(data)


def record_with_answer(row: Merged, output_key: str) -> dict[str, Any]:
    """One ``--format records`` record: the input's fields, the answer under ``output_key`` and
    ``<output_key>_error``; a line that is no record keeps its text under ``<output_key>_input``.
    OutputError if the record already has one of those fields."""
    error_key = f"{output_key}_error"
    if row.fields is None:
        out: dict[str, Any] = {f"{output_key}_input": (row.raw or b"").decode("utf-8", "replace").rstrip("\r\n")}
    else:
        clash = [k for k in (output_key, error_key) if k in row.fields]
        if clash:
            raise OutputError(
                f"the record at {row.position} already has a field {clash[0]!r}: collect with another "
                f"--output-key (the answers' field), e.g. --output-key answer"
            )
        out = dict(row.fields)
    out[output_key] = row.answer
    out[error_key] = row.error
    return out
