"""What a run report shows, as plain data. Pure: facts in, a JSON-ready dict out.

Times are seconds since the run was created (``t0``), so the page needs no time zone.

* **timeline** — one row per worker slot. Each launch's lives, as segments: ``starting`` (launch,
  or the restart after an in-place recovery, until the engine was ready), then one segment per
  chunk the worker answered with that engine (from its ``claim`` event to the next claim or the
  life's end), classed by how the chunk went: ``done`` (this worker finished it), ``failed``,
  ``interrupted`` (killed, stopped or taken over while holding it), ``running`` (answering it now);
  ``idle``: a launch that found nothing to claim. Interruptions are markers on the worker's row.
* **workers** — each slot's latest job, launches, engine starts, chunks done, cold start (launch to
  first answer), each launch's start-up split in two (``launch_times``: launch to worker start —
  machine, image and setup, which the store cannot tell apart — and the engine build), and its GPU
  time and cost (every launch of the slot, launch to end).
* **throughput** — committed records and tokens per second over time, from the parts' listing
  (each part counted when it was written: exact totals, at the commit interval's grain).
* **errors** — each error code with its count and a few example records.
* **interruptions** — the work each preemption (or kill) threw away, from ``chunkpilot.control.cost``, with
  the chunk the worker was answering.
* **chunks** — each chunk's state, records, attempts, the worker holding it or that finished it,
  and its GPU time: the time workers spent holding it after their engine was ready (from the
  histories' claim events), at each launch's price. Cold starts and idle time are no chunk's:
  the chunks' GPU times add up to less than the run's, the rest is on the cold-start line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from chunkpilot.claims import Claim
from chunkpilot.history import Life
from chunkpilot.layout import PartName
from chunkpilot.spec import AttemptRecord, RunSpec
from chunkpilot.control.cost import RunCost, attempt_seconds
from chunkpilot.control.pricing import Price

# Throughput bins: at least the run's commit interval wide (parts come that often), at most this many.
MAX_BINS = 150
# The timeline draws at most this many worker rows (the tables list every worker and chunk).
TIMELINE_WORKERS = 2500


@dataclass
class ReportFacts:
    """Everything a report is made of, as gathered from the store (``chunkpilot.control.report.gather``)."""

    spec: RunSpec
    t0: float  # the run's creation, seconds since the epoch
    now: float
    totals: dict[str, Any]  # StatusReport.totals
    rows: list[dict[str, Any]]  # StatusReport rows, as dicts
    cost: RunCost
    records: list[AttemptRecord]  # one per worker launch (``chunk`` holds the worker slot)
    lives: list[Life]  # one per worker process (``chunk`` holds the worker slot)
    parts: list[tuple[str, PartName, float]]  # (chunk, part, when it was written)
    error_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    price: Price | None = None  # the user's override of every attempt's price
    workers: list[dict[str, Any]] = field(default_factory=list)  # StatusReport.workers (WorkerRow), as dicts
    claims: dict[str, Claim | None] = field(default_factory=dict)  # chunk -> its claim as last read


def build(facts: ReportFacts) -> dict[str, Any]:
    spec = facts.spec
    spans = worker_spans(facts)
    return {
        "run": {"id": spec.run_id, "created_at": spec.created_at, "engine": spec.engine, "model": spec.model,
                "revision": spec.model_revision, "backend": spec.backend, "task": spec.task, "unit": spec.unit,
                "chunks": len(spec.chunks), "workers": spec.workers, "use_spot": spec.use_spot},
        "now": round(facts.now - facts.t0, 3),
        # where the time axes end: the last commit of a finished run, now for a run in progress
        "end": round(facts.totals["elapsed_seconds"] if facts.totals.get("finished") else facts.now - facts.t0, 3),
        "generated_at": facts.now,
        "totals": _totals(facts),
        "cost": facts.cost.to_dict(),
        "timeline": timeline(facts, spans),
        "throughput": throughput(facts),
        "errors": errors(facts),
        "interruptions": interruption_table(facts),
        "workers": worker_table(facts),
        "chunks": chunk_table(facts, spans),
    }


def _totals(facts: ReportFacts) -> dict[str, Any]:
    t = facts.totals
    keep = ("chunks", "states", "finished", "records_done", "ok", "errors", "error_rate", "prompt_tokens",
            "completion_tokens", "elapsed_seconds", "eta_seconds", "attempts", "preemptions", "records_per_s",
            "tokens_per_s", "workers", "engine_starts")
    out = {k: t.get(k) for k in keep}
    out["launches"] = len(facts.records)
    return out


def _price(facts: ReportFacts, record: AttemptRecord) -> float | None:
    return facts.price.per_hour if facts.price is not None else record.price_per_hour


def _slot_order(slot: str) -> tuple:
    """w2 before w10; chunk ids (runs of chunkpilot 0.1) after workers, in order."""
    return (0, int(slot[1:]), "") if slot[:1] == "w" and slot[1:].isdigit() else (1, 0, slot)


def worker_spans(facts: ReportFacts) -> list[dict[str, Any]]:
    """Every worker launch's lives as spans, in absolute time: ``starting`` (launch, or the restart
    in place, to engine ready), one span per chunk it answered (from its claim, or engine ready for
    the first, to the next claim or the life's end) and ``idle`` (a life that claimed nothing)."""
    now = facts.now
    claims = facts.claims
    chunk_ids = {c.id for c in facts.spec.chunks}
    lives: dict[tuple[str, int], list[Life]] = defaultdict(list)
    for life in sorted(facts.lives, key=lambda x: (x.chunk, x.attempt, x.life)):
        lives[(life.chunk, life.attempt)].append(life)
    spans: list[dict[str, Any]] = []

    def span(record: AttemptRecord, life: int, kind: str, start: float, end: float, note: str,
             chunk: str | None = None, chunk_attempt: int | None = None, committed: int = 0) -> None:
        spans.append({"worker": record.chunk, "launch": record.attempt, "life": life, "kind": kind, "start": start,
                      "end": max(start, end), "chunk": chunk, "chunk_attempt": chunk_attempt, "committed": committed,
                      "note": note})

    for record in sorted(facts.records, key=lambda r: (_slot_order(r.chunk), r.attempt)):
        end = record.ended_at if record.ended_at is not None else now
        its = lives.get((record.chunk, record.attempt), [])
        if not its:  # no worker history (not started yet, or a history that could not be written)
            kind = "starting" if record.ended_at is None else ("idle" if record.state == "SUCCEEDED" else "interrupted")
            span(record, 0, kind, record.launched_at, end, record.reason or record.state)
            continue
        begin = record.launched_at
        for i, life in enumerate(its):
            last_life = i == len(its) - 1
            life_end = end if last_life else life.last_seen
            running = last_life and record.ended_at is None and life.outcome is None
            broke = life.outcome in ("failed", "crashed")
            ended = "" if running else (life.outcome or "killed") + (f": {life.reason}" if life.reason else "")
            if life.ready_at is None:  # never started an engine
                if running:
                    kind = "starting"
                elif broke:
                    kind = "failed"
                elif life.outcome == "done" and not life.claims:
                    kind = "idle"
                else:
                    kind = "interrupted"
                note = "found nothing to claim" if kind == "idle" else ("launch to now" if running else ended)
                span(record, life.life, kind, begin, life_end, note)
                begin = life_end
                continue
            ready = life.ready_at
            span(record, life.life, "starting", begin, ready,
                 "launch to engine ready" if i == 0 else "restarted in place to engine ready")
            held = list(life.claims)
            if not held and record.chunk in chunk_ids:  # a run of chunkpilot 0.1: one chunk per job
                held = [{"t": ready, "chunk": record.chunk, "chunk_attempt": record.attempt}]
            if not held:  # an engine, and nothing claimed
                span(record, life.life, "running" if running else "idle", ready, life_end,
                     "working now" if running else "claimed nothing")
            for j, c in enumerate(held):
                last = j == len(held) - 1
                x0 = max(float(c["t"]), ready)
                x1 = life_end if last else max(x0, float(held[j + 1]["t"]))
                chunk, chunk_attempt = str(c.get("chunk")), c.get("chunk_attempt")
                upto = len(life.commits) if last else held[j + 1].get("commits_before", len(life.commits))
                committed = sum(int(e.get("records", 0)) for e in life.commits[c.get("commits_before", 0):upto])
                claim = claims.get(chunk)
                mine = claim is not None and (claim.worker, claim.worker_attempt, claim.attempt) == \
                    (record.chunk, record.attempt, chunk_attempt)
                if last and running:
                    kind = "running"
                elif mine and claim.state == "done":
                    kind = "done"
                elif mine and claim.state == "failed":
                    kind = "failed"
                elif claim is None and life.outcome == "done":  # a run of chunkpilot 0.1
                    kind = "done"
                elif last and broke:
                    kind = "failed"
                else:
                    kind = "interrupted"
                how = {"done": "chunk done", "failed": "chunk failed" + (f": {claim.reason}" if mine and claim.reason else ""),
                       "running": "answering now"}.get(kind)
                if how is None:
                    how = ended if last else "the chunk was taken over or handed back"
                span(record, life.life, kind, x0, x1, f"chunk {chunk} attempt {chunk_attempt}: {committed} records "
                     f"committed; {how}", chunk, chunk_attempt, committed)
            begin = life_end
    return spans


def held_at(lives: list[Life], slot: str, launch: int, life: int) -> dict[str, Any] | None:
    """The claim event a worker life was answering under when it ended (its last one)."""
    for x in lives:
        if (x.chunk, x.attempt, x.life) == (slot, launch, life) and x.claims:
            return x.claims[-1]
    return None


def timeline(facts: ReportFacts, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (worker slots, in order) and their segments and markers, in seconds since ``t0``."""
    t0 = facts.t0
    slots = sorted({s["worker"] for s in spans} | {r.chunk for r in facts.records}, key=_slot_order)
    shown = slots[:TIMELINE_WORKERS]
    visible = set(shown)
    segments = [{**{k: v for k, v in s.items() if k not in ("start", "end")},
                 "x0": round(s["start"] - t0, 3), "x1": round(s["end"] - t0, 3)}
                for s in spans if s["worker"] in visible]
    markers = []
    for i in facts.cost.interruptions:
        if i.chunk not in visible:
            continue
        held = held_at(facts.lives, i.chunk, i.attempt, i.life)
        what = f" while answering chunk {held['chunk']} (attempt {held.get('chunk_attempt')})" if held else ""
        markers.append({"worker": i.chunk, "launch": i.attempt, "life": i.life, "t": round(i.at - t0, 3), "kind": i.how,
                        "chunk": held["chunk"] if held else None,
                        "note": f"{i.how}{what}: {i.regenerated} records answered again, "
                                f"{i.lost_seconds + i.restart_seconds:.0f}s lost"})
    return {"workers": shown, "total_workers": len(slots), "segments": segments, "markers": markers}


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


def interruption_table(facts: ReportFacts) -> list[dict[str, Any]]:
    out = []
    for i in facts.cost.interruptions:
        held = held_at(facts.lives, i.chunk, i.attempt, i.life)
        d = {k: v for k, v in asdict(i).items() if k not in ("chunk", "attempt")}
        out.append({"worker": i.chunk, "launch": i.attempt, **d, "at": round(i.at - facts.t0, 3),
                    "chunk": held["chunk"] if held else None, "chunk_attempt": held.get("chunk_attempt") if held else None})
    return out


def worker_table(facts: ReportFacts) -> list[dict[str, Any]]:
    """Each worker slot's row from status, with the GPU time and cost of all its launches."""
    by_slot: dict[str, list[AttemptRecord]] = defaultdict(list)
    for r in facts.records:
        by_slot[r.chunk].append(r)
    interrupted: dict[str, int] = defaultdict(int)
    for i in facts.cost.interruptions:
        interrupted[i.chunk] += 1
    lives_by_launch: dict[tuple[str, int], list[Life]] = defaultdict(list)
    for life in facts.lives:
        lives_by_launch[(life.chunk, life.attempt)].append(life)
    out = []
    for row in facts.workers:
        recs = by_slot.get(row["worker"], [])
        prices = [_price(facts, r) for r in recs]
        cost = None
        if recs and None not in prices:
            cost = sum(attempt_seconds(r, facts.now) / 3600 * p for r, p in zip(recs, prices))
        out.append({"worker": row["worker"], "name": row["name"], "state": row["state"], "launches": row["launches"],
                    "engine_starts": row["engine_starts"], "chunks_done": row["chunks_done"],
                    "chunks_failed": row["chunks_failed"], "chunk": row["chunk"],
                    "first_answer_seconds": row["first_answer_seconds"], "interruptions": interrupted.get(row["worker"], 0),
                    "gpu_seconds": round(sum(attempt_seconds(r, facts.now) for r in recs), 1),
                    "cost": round(cost, 6) if cost is not None else None,
                    "launch_times": launch_times(recs, lives_by_launch)})
    return out


def launch_times(records: list[AttemptRecord], lives: dict[tuple[str, int], list[Life]]) -> list[dict[str, Any]]:
    """Each launch's start-up, as far as the store can tell: ``to_worker_start`` (launch until its
    first worker process started: waiting for a machine, its boot, the image pull and the task's
    setup — not told apart, the worker cannot see them) and ``engine_build`` (that process's start
    until its engine was ready: the model download or load and vLLM's start-up; None while it
    starts, or if it never did). Restarts in place (later lives) are not in it."""
    out = []
    for r in sorted(records, key=lambda r: r.attempt):
        first = min(lives.get((r.chunk, r.attempt), []), key=lambda x: x.life, default=None)
        out.append({"launch": r.attempt,
                    "to_worker_start": round(max(0.0, first.started_at - r.launched_at), 1) if first else None,
                    "engine_build": round(first.ready_at - first.started_at, 1)
                    if first is not None and first.ready_at is not None else None})
    return out


def chunk_table(facts: ReportFacts, spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each chunk's row from status, who holds or finished it, and the GPU time workers spent on it."""
    records = {(r.chunk, r.attempt): r for r in facts.records}
    seconds: dict[str, float] = defaultdict(float)
    cost: dict[str, float | None] = {}
    interrupted: dict[str, int] = defaultdict(int)
    for s in spans:
        if s["chunk"] is None:
            continue
        took = s["end"] - s["start"]
        seconds[s["chunk"]] += took
        price = _price(facts, records[(s["worker"], s["launch"])])
        if s["chunk"] not in cost or cost[s["chunk"]] is not None:
            cost[s["chunk"]] = None if price is None else cost.get(s["chunk"], 0.0) + took / 3600 * price
        if s["kind"] == "interrupted":
            interrupted[s["chunk"]] += 1
    out = []
    for row in facts.rows:
        chunk = row["chunk"]
        claim = facts.claims.get(chunk)
        worker = row.get("worker") or ""
        if not worker and claim is not None and claim.state in ("done", "failed"):
            worker = f"{claim.worker}-a{claim.worker_attempt}"
        c = cost.get(chunk)
        out.append({"chunk": chunk, "state": row["state"], "records": row["records_done"], "errors": row["errors"],
                    "attempts": row["attempts"], "worker": worker, "interruptions": interrupted.get(chunk, 0),
                    "gpu_seconds": round(seconds.get(chunk, 0.0), 1), "cost": round(c, 6) if c is not None else None,
                    "note": row.get("reason") or ""})
    return out
