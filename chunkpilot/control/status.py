"""Per-chunk and run progress, errors, rates and ETA from one observation. Pure: observations in, rows out.

Counts come from part names (records, error lines, tokens: one listing, no reads). Rates are
what was *committed* over a recent window (``RATE_WINDOW`` seconds; done chunks included), or
over the whole run once it has finished. What a listing cannot say — error codes, a worker
starting its engine, why a chunk failed — comes from ``ChunkDetail`` (heartbeats and done
markers), which callers read for the few chunks that need it (``chunks_needing_detail``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from chunkpilot.formats import units_between
from chunkpilot.layout import PartName
from chunkpilot.spec import RunSpec
from chunkpilot.names import job_name
from chunkpilot.control.observe import ChunkDetail, ChunkObservation
from chunkpilot.control.reconcile import ChunkState, Decision

RATE_WINDOW = 60.0  # seconds of commits the current rate is measured over
TOP_CODES = 3


@dataclass(frozen=True)
class ChunkRow:
    chunk: str
    state: str
    records_done: int
    ok: int
    errors: int
    done: int  # of the chunk's size, in the run's format's unit
    total: int
    attempts: int
    worker: str  # the worker launch holding it now (``w3-a2``), "" if none
    records_per_s: float | None
    tokens_per_s: float | None
    eta_seconds: float | None
    phase: str = ""  # e.g. "starting engine"
    error_codes: dict[str, int] | None = None  # None: not read this time
    reason: str = ""


@dataclass(frozen=True)
class WorkerRow:
    """One worker slot: its latest launch (``name``, ``state``) and what all its launches did.

    ``first_answer_seconds``: from its latest launch to that launch's first answer (its cold
    start: machine, setup, engine build); None until it answered. ``chunk``: the chunk it holds.
    """

    worker: str
    name: str
    state: str
    launches: int
    engine_starts: int
    chunks_done: int
    chunks_failed: int
    chunks_lost: int
    chunk: str | None
    first_answer_seconds: float | None
    preemptions: int
    max_in_flight: int
    splits_given: int = 0  # remainders of its chunks it handed over to idle workers
    splits_taken: int = 0  # remainders it asked for and answered


@dataclass
class StatusReport:
    """``totals`` and each row's ``done``/``total`` count the run's unit (``bytes`` for JSONL);
    the JSON names them after it (``bytes_done``, ``rows_total``…)."""

    run_id: str
    rows: list[ChunkRow]
    totals: dict = field(default_factory=dict)
    unit: str = "bytes"
    cost: Any = None  # chunkpilot.control.cost.RunCost, once a look has priced the run (totals["cost"] is its dict)
    workers: list[WorkerRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "unit": self.unit, "totals": self._named(self.totals),
                "workers": [asdict(w) for w in self.workers],
                "chunks": [self._named(asdict(r)) for r in self.rows]}

    def _named(self, data: dict) -> dict:
        return {(f"{self.unit}_{k}" if k in ("done", "total") else k): v for k, v in data.items()}


def part_units(part: PartName, sizes: list[int]) -> int:
    """Units of input spanned by a part's interval."""
    return units_between(part.first, part.end, sizes)


def _union(parts: list[PartName]) -> list[tuple[PartName, PartName | None]]:
    """Each part with the part clipped to what earlier parts do not already cover (None: covered)."""
    out, reach = [], None
    for part in sorted(parts):
        if reach is not None and part.end <= reach:
            out.append((part, None))
            continue
        if reach is not None and part.first < reach:
            out.append((part, PartName(reach, part.end, part.attempt, part.seq, part.records)))
        else:
            out.append((part, part))
        reach = part.end
    return out


def _covered(obs: ChunkObservation, sizes: list[int]) -> int:
    return sum(part_units(clipped, sizes) for _, clipped in _union([p for p, _ in obs.parts]) if clipped is not None)


def _counts(obs: ChunkObservation) -> tuple[int, int]:
    """(records, error lines) in the union of committed parts (a zombie's overlap counted once, roughly)."""
    records = errors = 0
    for part, clipped in _union([p for p, _ in obs.parts]):
        if clipped is None:
            continue
        share = 1.0 if clipped is part else 0.5  # partial overlap: an estimate, only for display
        records += round(part.records * share)
        errors += round(part.errors * share)
    return records, errors


def chunks_needing_detail(observed: dict[str, ChunkObservation], decision: Decision) -> list[str]:
    """Chunks whose heartbeat or marker says something the listing cannot: error codes (chunks with
    error lines), why a chunk failed, or whether a running one is still starting its engine."""
    out = []
    for chunk, obs in sorted(observed.items()):
        state = decision.states.get(chunk)
        if state is ChunkState.FAILED or any(p.errors for p, _ in obs.parts):
            out.append(chunk)
        elif state is ChunkState.RUNNING and not any(p.attempt == obs.attempts for p, _ in obs.parts):
            out.append(chunk)
    return out


def summarize(spec: RunSpec, observed: dict[str, ChunkObservation], decision: Decision, now: float,
              details: dict[str, ChunkDetail] | None = None) -> StatusReport:
    """The status of every chunk and of the run at time ``now``."""
    details = details or {}
    sizes = [p.length for p in spec.inputs]
    # The tokens a run makes: generated ones, or for embeddings the ones it reads.
    made = (lambda p: p.prompt_tokens) if spec.task == "embed" else (lambda p: p.completion_tokens)
    finished = bool(decision.states) and all(s.final for s in decision.states.values())
    started = datetime.fromisoformat(spec.created_at).timestamp()
    ends = [info.mtime for o in observed.values() for _, info in o.parts] + \
           [o.done.mtime for o in observed.values() if o.done is not None]
    end = max(ends, default=now) if finished else now
    lo = started if finished else max(started, now - RATE_WINDOW)
    span = end - lo

    rows = []
    for chunk in sorted(observed):
        obs = observed[chunk]
        state = decision.states.get(chunk, ChunkState.PENDING)
        detail = details.get(chunk)
        done = obs.done is not None
        units_done = obs.size if done else min(obs.size, _covered(obs, sizes))
        records, errors = _counts(obs)
        rec_rate = tok_rate = eta = None
        if state is ChunkState.RUNNING and obs.claim is not None:
            chunk_lo = max(min(obs.claim.claimed_at, now), now - RATE_WINDOW)
            recent = [p for p, info in obs.parts if info.mtime > chunk_lo]
            if recent and now > chunk_lo:
                rec_rate = sum(p.records for p in recent) / (now - chunk_lo)
                tok_rate = sum(made(p) for p in recent) / (now - chunk_lo)
                unit_rate = sum(part_units(p, sizes) for p in recent) / (now - chunk_lo)
                eta = (obs.size - units_done) / unit_rate if unit_rate else None
        phase = ""
        if detail is not None and state is ChunkState.RUNNING and detail.state == "starting":
            phase = "starting engine"
        reason = decision.reasons.get(chunk, "")
        if detail is not None and detail.state == "failed" and detail.reason:
            reason = f"{detail.reason} ({reason})" if reason else detail.reason
        rows.append(
            ChunkRow(
                chunk=chunk,
                state=state.value,
                records_done=records,
                ok=records - errors,
                errors=errors,
                done=units_done,
                total=obs.size,
                attempts=obs.attempts,
                worker=decision.holders.get(chunk, ""),
                records_per_s=round(rec_rate, 2) if rec_rate else None,
                tokens_per_s=round(tok_rate, 1) if tok_rate else None,
                eta_seconds=round(eta, 1) if eta is not None else None,
                phase=phase,
                error_codes=dict(detail.error_codes) if detail is not None and errors else ({} if not errors else None),
                reason=reason,
            )
        )

    in_window = [p for o in observed.values() for p, info in o.parts if info.mtime > lo]
    records_per_s = sum(p.records for p in in_window) / span if span > 0 else 0.0
    tokens_per_s = sum(made(p) for p in in_window) / span if span > 0 else 0.0
    unit_rate = sum(part_units(p, sizes) for p in in_window) / span if span > 0 else 0.0
    units_done = sum(r.done for r in rows)
    units_total = sum(r.total for r in rows)
    remaining = units_total - units_done
    eta = None if finished or not unit_rate or remaining <= 0 else remaining / unit_rate

    records_done = sum(r.records_done for r in rows)
    errors = sum(r.errors for r in rows)
    codes: Counter[str] = Counter()
    for r in rows:
        codes.update(r.error_codes or {})
    states: dict[str, int] = dict(Counter(r.state for r in rows))
    totals = {
        "chunks": len(rows),
        "states": states,
        "finished": finished,
        "records_done": records_done,
        "ok": records_done - errors,
        "errors": errors,
        "error_rate": round(errors / records_done, 4) if records_done else 0.0,
        "error_codes": dict(codes.most_common()),
        "error_codes_complete": all(r.error_codes is not None for r in rows),
        "prompt_tokens": sum(p.prompt_tokens for o in observed.values() for p, _ in o.parts),
        "completion_tokens": sum(p.completion_tokens for o in observed.values() for p, _ in o.parts),
        "done": units_done,
        "total": units_total,
        "records_per_s": round(records_per_s, 2),
        "tokens_per_s": round(tokens_per_s, 1),
        "rate_window_seconds": round(span, 1),
        "started_at": started,
        "elapsed_seconds": round(max(0.0, end - started), 1),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "starting_engine": sum(r.phase == "starting engine" for r in rows),
        "attempts": sum(r.attempts for r in rows),
        "preemptions": sum(w.job.recoveries for w in getattr(observed, "workers", {}).values() if w.job is not None),
    }
    return StatusReport(spec.run_id, rows, totals, spec.unit)


def worker_rows(observed, decision: Decision, beats: dict, launched: dict[tuple[str, int], float]) -> list[WorkerRow]:
    """A row per worker slot from the observation (its launches and latest job), the decision (what
    the launcher makes of it) and the launches' heartbeats (``WorkerBeat`` by (slot, launch));
    ``launched``: when each launch was made (its attempt record)."""
    rows = []
    for slot, obs in sorted(observed.workers.items(), key=lambda kv: int(kv[0][1:]) if kv[0][1:].isdigit() else -1):
        mine = [b for (s, _), b in beats.items() if s == slot]
        latest = beats.get((slot, obs.attempts))
        first = None
        if latest is not None and latest.first_answer_at is not None and (slot, obs.attempts) in launched:
            first = round(max(0.0, latest.first_answer_at - launched[(slot, obs.attempts)]), 1)
        state = decision.worker_states.get(slot, obs.job.status.value if obs.job is not None else "")
        if latest is not None and state in ("RUNNING", "SUCCEEDED") and latest.state not in ("running",):
            state = f"{state} ({latest.state})"
        rows.append(WorkerRow(
            worker=slot, name=job_name(observed.run_id, slot, obs.attempts) if obs.attempts else "",
            state=state, launches=obs.attempts,
            engine_starts=sum(b.engine_starts for b in mine), chunks_done=sum(b.chunks_done for b in mine),
            chunks_failed=sum(b.chunks_failed for b in mine), chunks_lost=sum(b.chunks_lost for b in mine),
            chunk=latest.chunk if latest is not None and latest.state == "running" else None,
            first_answer_seconds=first, preemptions=obs.job.recoveries if obs.job is not None else 0,
            max_in_flight=latest.max_in_flight if latest is not None else 0,
            splits_given=sum(b.splits_given for b in mine), splits_taken=sum(b.splits_taken for b in mine),
        ))
    return rows


def top_codes(codes: dict[str, int], n: int = TOP_CODES) -> str:
    """``missing_prompt 10, invalid_json 2`` (the ``n`` most frequent)."""
    return ", ".join(f"{code} {count}" for code, count in Counter(codes).most_common(n))
