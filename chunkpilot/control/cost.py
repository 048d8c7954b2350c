"""What a run cost, what it will cost, what preemptions cost, and what on-demand would have. Pure.

* **GPU time** of an attempt: from its launch to its end (the backend's end time where it
  has one; now for a running job). Every attempt is billed, preempted ones too.
* **Cost so far**: each attempt's GPU hours x its hourly price (``AttemptRecord.price_per_hour``,
  or the user's override for the whole run). **Projected**: so far + what the jobs running now
  cost per hour x the run's ETA.
* **Lost to preemptions**: for each worker life that was killed (no end event) or stopped
  before its chunk was done: the records it had answered but not saved at its last beat
  (the next life answers them again), the GPU seconds since its last save, and the
  restart — the next life's time from its launch (a new attempt) or from the kill (SkyPilot
  restarting the job in place) to its engine being ready. Their share of the cost is those
  seconds x the attempt's price.
* **Cold start**: each launch from being launched to its first answer (machine, setup, model
  download, engine build), or to its end if it never answered (a worker that found nothing to
  claim): warm workers pay this once per launch, not once per chunk.
* **On demand**: the same work with no preemptions — GPU seconds minus the lost and restart
  seconds — at each attempt's on-demand price; the saving is that minus the cost so far.

All money is USD. An attempt without a price yet (a cloud job waiting for a machine, whose
resources are not known) adds nothing and is counted in ``unpriced_attempts``; with no price
at all the figures are None, never a guess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from chunkpilot.history import Life
from chunkpilot.spec import AttemptRecord
from chunkpilot.control.pricing import Price


@dataclass(frozen=True)
class Interruption:
    """One worker life that ended before its chunk was done, and what that threw away."""

    chunk: str
    attempt: int
    life: int
    at: float  # when it ended (as well as we know)
    how: str  # "killed" (no end event: preempted, SIGKILL, machine gone) or "stopped" (exit 75)
    committed: int  # records it had saved
    regenerated: int  # records it had answered but not saved at its last beat: answered again
    lost_seconds: float  # from its last save to its end
    restart_seconds: float  # the next life's launch or restart until its engine was ready
    cost: float | None


@dataclass
class RunCost:
    gpu_seconds: float = 0.0
    so_far: float | None = None
    per_hour_now: float | None = None  # what the jobs running now cost an hour
    projected: float | None = None
    lost_records: int = 0
    lost_seconds: float = 0.0
    lost_cost: float | None = None
    on_demand: float | None = None
    saving: float | None = None
    unpriced_attempts: int = 0
    cold_seconds: float = 0.0  # launch -> first answer, every launch
    cold_cost: float | None = None
    sources: list[str] = field(default_factory=list)
    interruptions: list[Interruption] = field(default_factory=list)
    currency: str = "USD"

    def to_dict(self) -> dict:
        data = asdict(self)
        for k in ("so_far", "per_hour_now", "projected", "lost_cost", "on_demand", "saving", "cold_cost"):
            if data[k] is not None:
                data[k] = round(data[k], 6)
        data["gpu_seconds"] = round(self.gpu_seconds, 3)
        data["lost_seconds"] = round(self.lost_seconds, 3)
        data["cold_seconds"] = round(self.cold_seconds, 3)
        data["interruptions"] = len(self.interruptions)
        return data


def attempt_seconds(record: AttemptRecord, now: float) -> float:
    end = record.ended_at if record.ended_at is not None else now
    return max(0.0, end - record.launched_at)


def interruptions(records: Iterable[AttemptRecord], lives: Iterable[Life], now: float) -> list[Interruption]:
    """Every life that ended before its chunk was done, with its lost work (prices applied later)."""
    by_attempt = {(r.chunk, r.attempt): r for r in records}
    by_chunk: dict[str, list[Life]] = {}
    for life in sorted(lives, key=lambda x: (x.chunk, x.attempt, x.life)):
        by_chunk.setdefault(life.chunk, []).append(life)
    out = []
    for chunk, chunk_lives in by_chunk.items():
        for i, life in enumerate(chunk_lives):
            if life.outcome in ("done", "failed", "crashed", "idle"):  # idle: stopped between chunks, nothing lost
                continue
            record = by_attempt.get((chunk, life.attempt))
            following = chunk_lives[i + 1] if i + 1 < len(chunk_lives) else None
            same_attempt_next = following is not None and following.attempt == life.attempt
            attempt_open = record is not None and record.ended_at is None
            if life.outcome is None and following is None and (attempt_open or record is None):
                continue  # still running, as far as anyone knows
            if same_attempt_next:
                end = life.last_seen  # restarted in place: its last sign of life is the best end we have
            elif record is not None and record.ended_at is not None:
                end = max(life.last_seen, record.ended_at)
            else:
                end = life.last_seen
            saved_at = max(x for x in (life.last_commit_at, life.ready_at, life.started_at) if x is not None)
            restart = 0.0
            if following is not None and following.ready_at is not None:
                if same_attempt_next:
                    restart = max(0.0, following.ready_at - end)
                else:
                    nxt = by_attempt.get((chunk, following.attempt))
                    launched = nxt.launched_at if nxt is not None else following.started_at
                    restart = max(0.0, following.ready_at - launched)
            out.append(Interruption(chunk, life.attempt, life.life, end, "killed" if life.outcome is None else "stopped",
                                    life.committed, life.answered_uncommitted, max(0.0, end - saved_at), restart, None))
    return out


def cold_seconds(record: AttemptRecord, first_answer_at: float | None, now: float) -> float:
    """A launch's cold start: launch to first answer, or to its end (now if running) without one."""
    end = record.ended_at if record.ended_at is not None else now
    until = min(first_answer_at, end) if first_answer_at is not None else end
    return max(0.0, until - record.launched_at)


def run_cost(records: list[AttemptRecord], lives: list[Life], now: float, eta_seconds: float | None,
             finished: bool, override: Price | None = None,
             first_answers: dict[tuple[str, int], float] | None = None) -> RunCost:
    """The cost figures of a run from its attempt records and worker lives at time ``now``;
    ``first_answers``: each launch's first answer time, by (slot, launch), for the cold-start line."""
    first_answers = first_answers or {}
    cost = RunCost()
    prices: dict[tuple[str, int], Price] = {}
    for r in records:
        if override is not None:
            prices[(r.chunk, r.attempt)] = override
        else:
            prices[(r.chunk, r.attempt)] = Price(r.price_per_hour, r.on_demand_per_hour, r.price_source or "no price")
    cost.sources = sorted({p.source for p in prices.values()})
    so_far = 0.0
    per_hour_now = 0.0
    priced = 0
    lost_by_attempt: dict[tuple[str, int], float] = {}
    for it in interruptions(records, lives, now):
        price = prices.get((it.chunk, it.attempt))
        seconds = it.lost_seconds + it.restart_seconds
        share = seconds / 3600 * price.per_hour if price is not None and price.per_hour is not None else None
        cost.interruptions.append(Interruption(**{**asdict(it), "cost": share}))
        lost_by_attempt[(it.chunk, it.attempt)] = lost_by_attempt.get((it.chunk, it.attempt), 0.0) + seconds
        cost.lost_records += it.regenerated
        cost.lost_seconds += seconds
    on_demand = 0.0
    on_demand_known = True
    cold_cost = 0.0
    for r in records:
        seconds = attempt_seconds(r, now)
        cold = cold_seconds(r, first_answers.get((r.chunk, r.attempt)), now)
        cost.gpu_seconds += seconds
        cost.cold_seconds += cold
        price = prices[(r.chunk, r.attempt)]
        if price.per_hour is None:
            cost.unpriced_attempts += 1
        else:
            priced += 1
            so_far += seconds / 3600 * price.per_hour
            cold_cost += cold / 3600 * price.per_hour
            if r.ended_at is None:
                per_hour_now += price.per_hour
        useful = max(0.0, seconds - lost_by_attempt.get((r.chunk, r.attempt), 0.0))
        if price.on_demand_per_hour is None:
            on_demand_known = False
        else:
            on_demand += useful / 3600 * price.on_demand_per_hour
    if priced:
        cost.so_far = so_far
        cost.per_hour_now = per_hour_now
        cost.lost_cost = sum((i.cost or 0.0 for i in cost.interruptions), 0.0)
        cost.cold_cost = cold_cost
        if finished:
            cost.projected = so_far
        elif eta_seconds is not None:
            cost.projected = so_far + per_hour_now * eta_seconds / 3600
        if on_demand_known:
            cost.on_demand = on_demand
            cost.saving = on_demand - so_far
    return cost
