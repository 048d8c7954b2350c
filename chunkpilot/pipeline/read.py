"""What a pipeline step reads: the records of a chunk with every earlier step's answer merged in.

Chunks keep their identity through a pipeline: every step run has the pipeline's chunk plan, and
a record keeps its input position in every step. So step k's chunk j reads step k-1's chunk j
straight from its committed parts (no collect in between): the input's records of the chunk,
joined by position with each earlier step's answers (``read_answered``, recursively down to the
input), then through the filters between the two steps. Memory stays flat: every level streams.

A record reaches the next step in one of four ways (``StepRecord``): answered by every earlier
step (its ``fields`` hold each step's ``<output_key>`` and ``<output_key>_error``); ``failed``
(an earlier step has an error for it: the next steps write ``upstream_error`` lines for it and
never send it to a model); ``dropped`` by a filter (``filtered_out`` lines naming the filter);
or blank (skipped and counted, as in any run).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

from chunkpilot import layout
from chunkpilot.committed import chunk_parts, output_lines
from chunkpilot.formats import Record, get_format
from chunkpilot.output import answer_of
from chunkpilot.pipeline.documents import DROPPED_CODE, UPSTREAM_FAILED_CODE, FilterRef, StepLink
from chunkpilot.pipeline.filters import FilterProblem, compile_filter
from chunkpilot.prompts import PromptSpec
from chunkpilot.spec import ChunkManifest, RunSpec
from chunkpilot.store import Store


@dataclass(frozen=True)
class StepRecord:
    """One record of a chunk as a step sees it. ``record``: as the input format read it;
    ``fields``: its fields plus each earlier step's ``<key>`` and ``<key>_error`` (None for an input
    line that is no record); ``failed``: ``(code, message)`` of the first earlier step that has no
    answer for it; ``dropped``: ``(filter name, why)`` when a filter dropped it."""

    record: Record
    fields: dict[str, Any] | None
    failed: tuple[str, str] | None = None
    dropped: tuple[str, str] | None = None

    @property
    def live(self) -> bool:
        """Answered by every step so far: the next step sends it to its model."""
        return self.fields is not None and self.failed is None and self.dropped is None and not self.record.blank


def step_link(spec: RunSpec) -> StepLink | None:
    return None if not spec.pipeline else StepLink.from_dict(spec.pipeline)


def open_spec(root: Store, run_id: str) -> tuple[Store, RunSpec]:
    run_store = root.child(run_id)
    return run_store, RunSpec.from_json(run_store.get(layout.RUN_SPEC))


def read_step_input(root: Store, spec: RunSpec, manifest: ChunkManifest) -> Iterator[StepRecord]:
    """The records step run ``spec`` reads for ``manifest``'s chunk, in input order. ``root``: the
    store holding the step runs (the one ``spec``'s run lives in)."""
    link = step_link(spec)
    if link is None or link.upstream is None:
        base: Iterable[StepRecord] = (StepRecord(r, r.fields) for r in get_format(spec.input_format).records(spec.inputs, manifest))
    else:
        up_store, up_spec = open_spec(root, link.upstream)
        base = read_answered(root, up_store, up_spec, manifest)
    return apply_filters(base, link.filters if link is not None else ())


def read_answered(root: Store, run_store: Store, spec: RunSpec, manifest: ChunkManifest) -> Iterator[StepRecord]:
    """What step run ``spec`` read for the chunk, each record joined with the answer it committed
    (``<output_key>`` and ``<output_key>_error``). A record it has no line for (its chunk not done)
    gets the error ``not_answered``."""
    key = PromptSpec.from_dict(spec.prompt).output_key
    link = step_link(spec)
    step = link.step if link is not None else spec.run_id
    lines = output_lines(run_store, chunk_parts(run_store, manifest.chunk))
    pending = next(lines, None)
    for item in read_step_input(root, spec, manifest):
        if item.record.blank:
            yield item
            continue
        position = item.record.position
        while pending is not None and pending[0] < position:
            pending = next(lines, None)
        line = None
        if pending is not None and pending[0] == position:
            line, pending = pending[1], next(lines, None)
        if item.dropped is not None:
            yield item
            continue
        if line is None:
            answer, error = None, {"code": "not_answered", "message": f"step {step} has no answer for it (not done)"}
        else:
            answer, error = answer_of(line)
        fields = None if item.fields is None else {**item.fields, key: answer, f"{key}_error": error}
        failed = item.failed
        if failed is None and (error is not None or item.record.error is not None):
            code, message = ((error or {}).get("code"), (error or {}).get("message")) if error else item.record.error
            failed = (str(code), f"step {step}: {code}: {message}")
        yield replace(item, fields=fields, failed=failed)


def apply_filters(records: Iterable[StepRecord], filters: Iterable[FilterRef]) -> Iterator[StepRecord]:
    """``records`` with each filter applied in order to every live one. A record a filter cannot be
    evaluated on (a type error) is dropped by it too, with the error as the reason."""
    compiled = [(f.name, compile_filter(f.expression)) for f in filters]
    for item in records:
        if compiled and item.live:
            for name, check in compiled:
                try:
                    kept = check.keep(item.fields or {})
                    why = f"dropped by filter {name}: {check.expression}"
                except FilterProblem as exc:
                    kept, why = False, f"filter {name} could not be evaluated ({exc}): dropped"
                if not kept:
                    item = replace(item, dropped=(name, why))
                    break
        yield item


def as_input_record(item: StepRecord, first_step: bool) -> Record:
    """The record a step's worker answers: a live one with its merged fields; one that is not this
    step's to answer as an error of code ``filtered_out`` or ``upstream_error`` (with its fields, so
    its custom_id is kept); an input line that is no record as the format read it (the first step's
    own error, as in any run)."""
    r = item.record
    if r.blank:
        return r
    if item.dropped is not None:
        return Record(r.position, r.end, fields=item.fields, error=(DROPPED_CODE, item.dropped[1]), raw=r.raw)
    if item.failed is not None:
        return Record(r.position, r.end, fields=item.fields, error=(UPSTREAM_FAILED_CODE, item.failed[1]), raw=r.raw)
    if r.error is not None and first_step:
        return r
    return Record(r.position, r.end, fields=item.fields, raw=r.raw)


def step_records(root: Store, spec: RunSpec, manifest: ChunkManifest) -> Iterator[Record]:
    """``read_step_input`` as the worker's record stream (``as_input_record``)."""
    link = step_link(spec)
    first = link is None or link.upstream is None
    return (as_input_record(item, first) for item in read_step_input(root, spec, manifest))
