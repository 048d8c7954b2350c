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
from launcher.collect.copy import done_chunks
from launcher.collect.records import json_value
from launcher.outfile import write_atomically


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
    """Write the pipeline's records (JSON Lines) to ``path``, its dropped records beside it and the
    fields' lineage. IncompleteRunError, unless ``allow_partial``, while a step's chunk is not done."""
    if path.startswith("s3://") or not path.lower().endswith(".jsonl"):
        raise OutputError(f"-o {path}: a pipeline is collected as a local .jsonl file (records with every step's field)")
    last, upto, filters = _selection(doc, step)
    root = open_store(store_uri)
    for s in upto:
        run_store = root.child(s.run or "")
        missing = set(doc.chunks) - done_chunks(run_store, set(doc.chunks))
        if missing and not allow_partial:
            raise IncompleteRunError(f"step {s.name} ({s.run}) has {len(missing)} of {len(doc.chunks)} chunk(s) not done: "
                                     f"run `launcher watch {doc.run_id}`, or pass --allow-partial")
    run_store, spec = open_spec(root, last.run or "")
    report = PipelineCollectReport(dropped_path=f"{path[:-len('.jsonl')]}.dropped.jsonl",
                                   lineage_path=f"{path[:-len('.jsonl')]}.lineage.json")

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
