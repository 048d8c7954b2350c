"""What a run report shows, as plain data. Pure: facts in, a JSON-ready dict out.

Times are seconds since the run was created (``t0``), so the page needs no time zone.

* **timeline** — one row per chunk; each attempt's segments: ``starting`` (launch, or the
  restart after an in-place recovery, until the engine was ready), then ``working`` until the
  life ended, classed by how it ended (``done``, ``interrupted``: killed or stopped before the
  chunk was done, ``failed``, ``running``: still going). Interruptions are markers.
* **throughput** — committed records and tokens per second over time, from the parts' listing
  (each part counted when it was written: exact totals, at the commit interval's grain).
* **errors** — each error code with its count and a few example records.
* **interruptions** — the work each preemption (or kill) threw away, from ``launcher.cost``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from chunkpilot.history import Life
from chunkpilot.layout import PartName
from chunkpilot.spec import AttemptRecord, RunSpec
from launcher.cost import RunCost, attempt_seconds
from launcher.pricing import Price

# Throughput bins: at least the run's commit interval wide (parts come that often), at most this many.
MAX_BINS = 150
# The timeline draws at most this many chunks (the table lists every chunk).
TIMELINE_CHUNKS = 2500


@dataclass
class ReportFacts:
    """Everything a report is made of, as gathered from the store (``launcher.report.gather``)."""

    spec: RunSpec
    t0: float  # the run's creation, seconds since the epoch
    now: float
    totals: dict[str, Any]  # StatusReport.totals
    rows: list[dict[str, Any]]  # StatusReport rows, as dicts
    cost: RunCost
    records: list[AttemptRecord]
    lives: list[Life]
    parts: list[tuple[str, PartName, float]]  # (chunk, part, when it was written)
    error_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    price: Price | None = None  # the user's override of every attempt's price


def build(facts: ReportFacts) -> dict[str, Any]:
    spec = facts.spec
    return {
        "run": {"id": spec.run_id, "created_at": spec.created_at, "engine": spec.engine, "model": spec.model,
                "revision": spec.model_revision, "backend": spec.backend, "task": spec.task, "unit": spec.unit,
                "chunks": len(spec.chunks), "use_spot": spec.use_spot},
        "now": round(facts.now - facts.t0, 3),
        # where the time axes end: the last commit of a finished run, now for a run in progress
        "end": round(facts.totals["elapsed_seconds"] if facts.totals.get("finished") else facts.now - facts.t0, 3),
        "generated_at": facts.now,
        "totals": _totals(facts),
        "cost": facts.cost.to_dict(),
        "timeline": timeline(facts),
        "throughput": throughput(facts),
        "errors": errors(facts),
        "interruptions": [_rel(asdict(i), facts.t0, ("at",)) for i in facts.cost.interruptions],
        "chunks": chunk_table(facts),
    }


def _rel(d: dict, t0: float, keys: tuple[str, ...]) -> dict:
    return {k: (round(v - t0, 3) if k in keys and v is not None else v) for k, v in d.items()}


def _totals(facts: ReportFacts) -> dict[str, Any]:
    t = facts.totals
    keep = ("chunks", "states", "finished", "records_done", "ok", "errors", "error_rate", "prompt_tokens",
            "completion_tokens", "elapsed_seconds", "eta_seconds", "attempts", "preemptions", "records_per_s",
            "tokens_per_s")
    return {k: t.get(k) for k in keep}


def timeline(facts: ReportFacts) -> dict[str, Any]:
    """Rows (chunk ids, in order) and their segments and markers."""
    t0, now = facts.t0, facts.now
    chunks = [c.id for c in facts.spec.chunks]
    shown = chunks[:TIMELINE_CHUNKS]
    visible = set(shown)
    done_chunks = {r["chunk"] for r in facts.rows if r["state"] == "DONE"}
    lives: dict[tuple[str, int], list[Life]] = defaultdict(list)
    for life in sorted(facts.lives, key=lambda x: (x.chunk, x.attempt, x.life)):
        lives[(life.chunk, life.attempt)].append(life)
    segments: list[dict[str, Any]] = []
    for record in sorted(facts.records, key=lambda r: (r.chunk, r.attempt)):
        if record.chunk not in visible:
            continue
        end = record.ended_at if record.ended_at is not None else now
        its = lives.get((record.chunk, record.attempt), [])
        last_attempt = max((r.attempt for r in facts.records if r.chunk == record.chunk), default=record.attempt)
        if not its:  # no worker history (not started yet, or a run from before histories)
            kind = "running" if record.ended_at is None else ("done" if record.state == "DONE" else "interrupted")
            segments.append(_segment(record.chunk, record.attempt, 0, "starting" if kind == "running" else kind,
                                     record.launched_at, end, t0, record.reason or record.state))
            continue
        begin = record.launched_at
        for i, life in enumerate(its):
            last_life = i == len(its) - 1
            life_end = end if last_life else life.last_seen
            ready = life.ready_at if life.ready_at is not None else min(life_end, life.last_seen)
            segments.append(_segment(record.chunk, record.attempt, life.life, "starting", begin, ready, t0,
                                     "launch to engine ready" if i == 0 else "restarted in place to engine ready"))
            if life.outcome == "done":
                kind = "done"
            elif life.outcome in ("failed", "crashed"):
                kind = "failed"
            elif last_life and record.ended_at is None and life.outcome is None:
                kind = "running"
            elif record.chunk in done_chunks and last_life and record.attempt == last_attempt:
                kind = "done"
            else:
                kind = "interrupted"
            note = f"{life.committed} records committed" + (f"; {life.reason}" if life.reason else "")
            segments.append(_segment(record.chunk, record.attempt, life.life, kind, ready, life_end, t0, note))
            begin = life_end
    markers = [{"chunk": i.chunk, "t": round(i.at - t0, 3), "kind": i.how, "attempt": i.attempt,
                "note": f"{i.how}: {i.regenerated} records answered again, {i.lost_seconds + i.restart_seconds:.0f}s lost"}
               for i in facts.cost.interruptions if i.chunk in visible]
    return {"chunks": shown, "total_chunks": len(chunks), "segments": segments, "markers": markers}


def _segment(chunk: str, attempt: int, life: int, kind: str, start: float, end: float, t0: float, note: str) -> dict:
    return {"chunk": chunk, "attempt": attempt, "life": life, "kind": kind, "x0": round(start - t0, 3),
            "x1": round(max(start, end) - t0, 3), "note": note}


def throughput(facts: ReportFacts) -> dict[str, Any]:
    """Records/s and tokens/s per time bin, from when each part was written."""
    embed = facts.spec.task == "embed"
    least = facts.spec.commit_seconds
    if not facts.parts:
        return {"bin_seconds": least, "t": [], "records_per_s": [], "tokens_per_s": [], "tokens": "prompt" if embed else "completion"}
    span = max(least, max(t for _, _, t in facts.parts) - facts.t0)
    width = max(least, span / MAX_BINS)
    n = int(span // width) + 1
    records = [0] * n
    tokens = [0] * n
    for _, part, t in facts.parts:
        i = min(n - 1, max(0, int((t - facts.t0) // width)))
        records[i] += part.records
        tokens[i] += part.prompt_tokens if embed else part.completion_tokens
    return {"bin_seconds": round(width, 3), "t": [round((i + 0.5) * width, 3) for i in range(n)],
            "records_per_s": [round(r / width, 3) for r in records], "tokens_per_s": [round(k / width, 3) for k in tokens],
            "tokens": "prompt" if embed else "completion"}


def errors(facts: ReportFacts) -> list[dict[str, Any]]:
    codes = facts.totals.get("error_codes") or {}
    out = [{"code": code, "count": count, "examples": facts.error_examples.get(code, [])}
           for code, count in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))]
    for code, examples in sorted(facts.error_examples.items()):  # seen in a part, not yet counted by a marker
        if code not in codes:
            out.append({"code": code, "count": None, "examples": examples})
    return out


def chunk_table(facts: ReportFacts) -> list[dict[str, Any]]:
    by_chunk: dict[str, list[AttemptRecord]] = defaultdict(list)
    for r in facts.records:
        by_chunk[r.chunk].append(r)
    interrupted: dict[str, int] = defaultdict(int)
    for i in facts.cost.interruptions:
        interrupted[i.chunk] += 1
    out = []
    for row in facts.rows:
        recs = by_chunk.get(row["chunk"], [])
        seconds = sum(attempt_seconds(r, facts.now) for r in recs)
        prices = [facts.price.per_hour if facts.price is not None else r.price_per_hour for r in recs]
        cost = None
        if recs and None not in prices:
            cost = sum(attempt_seconds(r, facts.now) / 3600 * p for r, p in zip(recs, prices))
        out.append({"chunk": row["chunk"], "state": row["state"], "records": row["records_done"], "errors": row["errors"],
                    "attempts": row["attempts"], "interruptions": interrupted.get(row["chunk"], 0),
                    "gpu_seconds": round(seconds, 1), "cost": round(cost, 6) if cost is not None else None,
                    "note": row.get("reason") or ""})
    return out
