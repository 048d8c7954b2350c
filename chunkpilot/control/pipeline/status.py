"""A row per pipeline step: its run, whether it was reused, chunk states, records, errors,
records dropped by filters or failed upstream, tokens and cost — each step looked at as
``launcher status`` looks at a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from chunkpilot import layout
from chunkpilot.errors import NotFoundError
from chunkpilot.pipeline.documents import PipelineRun
from chunkpilot.spec import SuccessMarker
from chunkpilot.control.backends import make_backend
from chunkpilot.control.collect.copy import done_chunks
from chunkpilot.control.runs import open_run


@dataclass
class StepRow:
    step: str
    kind: str  # "model" or "filter"
    run: str = ""
    state: str = ""  # done / running / waiting / failed / reused / paused
    reused: bool = False
    chunks_done: int = 0
    chunks: int = 0
    records: int = 0
    errors: int = 0
    passed: dict[str, int] = field(default_factory=dict)  # filtered_out / upstream_error lines, done chunks
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    detail: str = ""  # a filter's expression; why a step was reused or rerun

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_rows(store_uri: str, doc: PipelineRun) -> list[StepRow]:
    """One row per step of ``doc``, in order (filters too: their expression)."""
    from chunkpilot.control.watch import WatchOptions, decide_run, look
    from chunkpilot.control.observe import observe

    rows = []
    for s in doc.steps:
        if s.filter is not None:
            rows.append(StepRow(s.name, "filter", detail=s.filter))
            continue
        run = open_run(store_uri, s.run or "")
        observed = observe(run.run_store, run.spec, make_backend(run.spec, store_uri))
        decision = decide_run(run, observed, WatchOptions())
        report = look(run, decision, observed)
        t = report.totals
        done = done_chunks(run.run_store, set(run.spec.chunk_ids))
        states = t["states"]
        state = ("done" if len(done) == t["chunks"] else "failed" if states.get("FAILED") else
                 "paused" if run.cancelled else "running" if states.get("RUNNING") else "waiting")
        cost = (t.get("cost") or {}).get("so_far") if isinstance(t.get("cost"), dict) else None
        rows.append(StepRow(s.name, "model", s.run or "", state, s.reused, len(done), t["chunks"], t["records_done"],
                            t["errors"], _passed(run.run_store, done), t["prompt_tokens"], t["completion_tokens"],
                            cost, s.reason))
    return rows


def _passed(run_store, done: set[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for chunk in sorted(done):
        try:
            counts.update(SuccessMarker.from_json(run_store.get(layout.done_marker(chunk))).passed)
        except (NotFoundError, ValueError, TypeError):
            continue
    return dict(counts)
