"""A pipeline's records: the final ones (every step's ``output_key`` merged in, after the last
filters), or one step's (``--step``), in input order.

Each chunk is read as the next step would read it (``chunkpilot.pipeline.read``): the input's
records joined by position with each step's committed answers, through the filters. A record a
filter dropped is never silently lost: it goes to ``<output>.dropped.jsonl`` with the filter's
name and why. ``<output>.lineage.json`` says which step, run, model commit and content key
produced each field.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chunkpilot import layout
from chunkpilot.errors import IncompleteRunError, OutputError
from chunkpilot.pipeline.documents import FilterRef, PipelineRun, StepEntry
from chunkpilot.pipeline.read import apply_filters, open_spec, read_answered
from chunkpilot.spec import ChunkManifest
from chunkpilot.store import open_store
from chunkpilot.control.collect.copy import done_chunks
from chunkpilot.control.collect.records import json_value
from chunkpilot.control.outfile import write_atomically


@dataclass
class PipelineCollectReport:
    records: int = 0  # written to the output
    failed: int = 0  # of them, records some step has an error for
    dropped: Counter = field(default_factory=Counter)  # by filter name
    blank: int = 0
    bytes: int = 0
    dropped_path: str = ""
    lineage_path: str = ""


def _selection(doc: PipelineRun, step: str | None) -> tuple[StepEntry, list[StepEntry], list[FilterRef]]:
    """(the model step whose answers are read, the model steps up to it, the filters after it)."""
    models = doc.model_steps
    if step is None:
        last, filters = models[-1], doc.trailing_filters
    else:
        names = [s.name for s in doc.steps]
        if step not in names:
            from chunkpilot.pipeline.spec import closest

            raise OutputError(f"--step {step}: no such step in {doc.run_id}{closest(step, names)}")
        chosen = next(s for s in doc.steps if s.name == step)
        before = [s for s in models if s.index <= chosen.index]
        if not before:
            raise OutputError(f"--step {step}: a filter before any model step has nothing to collect; "
                              f"collect --step {models[0].name}")
        last = before[-1]
        filters = [s for s in doc.steps if last.index < s.index <= chosen.index]
    upto = [s for s in models if s.index <= last.index]
    return last, upto, [FilterRef(f.name, f.filter or "") for f in filters]


def lineage(doc: PipelineRun, steps: list[StepEntry]) -> dict[str, Any]:
    """Which step produced each field of the output records: its run, model and commit, and key."""
    return {s.output_key: {"step": s.name, "run": s.run, "model": s.model, "model_revision": s.model_revision,
                           "key": s.key, "reused": s.reused} for s in steps if s.output_key}


def collect_pipeline(store_uri: str, doc: PipelineRun, path: str, step: str | None = None,
                     allow_partial: bool = False) -> PipelineCollectReport:
    """Write the pipeline's records to ``path`` — JSON Lines (``.jsonl``) or Parquet (``.parquet``:
    columns typed from the JSON values, a field's types across records promoted to one) — its
    dropped records beside it (``<stem>.dropped.jsonl``) and the fields' lineage
    (``<stem>.lineage.json``). IncompleteRunError, unless ``allow_partial``, while a step's chunk is
    not done."""
    stem, suffix = os.path.splitext(path)
    if path.startswith("s3://") or suffix.lower() not in (".jsonl", ".parquet"):
        raise OutputError(f"-o {path}: a pipeline is collected as a local .jsonl or .parquet file (records with "
                          "every step's field)")
    if suffix.lower() == ".jsonl":
        return _collect_lines(store_uri, doc, path, stem, step, allow_partial)
    lines = f"{path}.records.partial"  # the records as JSON Lines first: Parquet's column types need them all
    try:
        report = _collect_lines(store_uri, doc, lines, stem, step, allow_partial)
        write_atomically(path, lambda fd: jsonl_to_parquet(lines, fd))
    finally:
        if os.path.exists(lines):
            os.unlink(lines)
    report.bytes = os.path.getsize(path)
    return report


PARQUET_BATCH = 8192  # records converted at a time: memory stays flat whatever the output's size


def jsonl_to_parquet(lines: str, fd: int) -> None:
    """The JSON objects of the file ``lines`` as one Parquet table written to ``fd``, in two streaming
    passes: the schema every batch's inferred schema promotes to, then the batches cast to it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def batches():
        with open(lines, "rb") as f:
            batch = []
            for line in f:
                batch.append(json.loads(line))
                if len(batch) == PARQUET_BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch

    schema = None
    for batch in batches():
        found = pa.Table.from_pylist(batch).schema
        schema = found if schema is None else pa.unify_schemas([schema, found], promote_options="permissive")
    schema = schema or pa.schema([])
    with os.fdopen(os.dup(fd), "wb") as out, pq.ParquetWriter(out, schema) as writer:
        for batch in batches():
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def _collect_lines(store_uri: str, doc: PipelineRun, path: str, stem: str, step: str | None,
                   allow_partial: bool) -> PipelineCollectReport:
    last, upto, filters = _selection(doc, step)
    root = open_store(store_uri)
    for s in upto:
        run_store = root.child(s.run or "")
        missing = set(doc.chunks) - done_chunks(run_store, set(doc.chunks))
        if missing and not allow_partial:
            raise IncompleteRunError(f"step {s.name} ({s.run}) has {len(missing)} of {len(doc.chunks)} chunk(s) not done: "
                                     f"run `launcher watch {doc.run_id}`, or pass --allow-partial")
    run_store, spec = open_spec(root, last.run or "")
    report = PipelineCollectReport(dropped_path=f"{stem}.dropped.jsonl", lineage_path=f"{stem}.lineage.json")

    def write(fd: int) -> None:
        with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as out, open(report.dropped_path, "wb") as dropped:
            for chunk in doc.chunks:
                manifest = ChunkManifest.from_json(run_store.get(layout.manifest(chunk)))
                for item in apply_filters(read_answered(root, run_store, spec, manifest), filters):
                    if item.record.blank:
                        report.blank += 1
                        continue
                    if item.dropped is not None:
                        report.dropped[item.dropped[0]] += 1
                        dropped.write(_line({"dropped_by": item.dropped[0], "reason": item.dropped[1],
                                             "record": item.fields}))
                        continue
                    row = item.fields if item.fields is not None else \
                        {"_input": (item.record.raw or b"").decode("utf-8", "replace").rstrip("\r\n")}
                    data = _line(row)
                    out.write(data)
                    report.records += 1
                    report.failed += item.failed is not None
                    report.bytes += len(data)

    write_atomically(path, write)
    with open(report.lineage_path, "w", encoding="utf-8") as f:
        json.dump({"pipeline": doc.run_id, "fields": lineage(doc, upto),
                   "filters": [{"step": f.name, "filter": f.expression} for f in filters]}, f, indent=1)
    return report


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, default=json_value).encode() + b"\n"
