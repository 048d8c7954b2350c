"""Per-chunk progress, rate and ETA from one observation. Pure: observations in, rows out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from launcher.observe import ChunkObservation
from launcher.reconcile import ChunkState, Decision
from launcher.spec import PartName, RunSpec


@dataclass(frozen=True)
class ChunkRow:
    chunk: str
    state: str
    records_done: int
    bytes_done: int
    bytes_total: int
    attempts: int
    preemptions: int
    records_per_s: float | None
    eta_seconds: float | None
    reason: str = ""


@dataclass
class StatusReport:
    run_id: str
    rows: list[ChunkRow]
    totals: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "totals": self.totals, "chunks": [asdict(r) for r in self.rows]}


def part_bytes(part: PartName, sizes: list[int]) -> int:
    """Input bytes spanned by a part's interval."""
    (s0, o0), (s1, o1) = part.first, part.end
    if s0 == s1:
        return max(0, o1 - o0)
    return (sizes[s0] - o0) + sum(sizes[s0 + 1 : s1]) + o1


def _covered_bytes(obs: ChunkObservation, sizes: list[int]) -> int:
    total, reach = 0, None
    for part, _ in sorted(obs.parts, key=lambda p: p[0]):
        if reach is not None and part.end <= reach:
            continue
        if reach is not None and part.first < reach:
            clipped = PartName(reach, part.end, part.attempt, part.seq, part.records)
            total += part_bytes(clipped, sizes)
        else:
            total += part_bytes(part, sizes)
        reach = part.end
    return total


def _rates(obs: ChunkObservation, sizes: list[int]) -> tuple[float | None, float | None]:
    """(records/s, bytes/s) of the latest attempt, from its parts' commit times."""
    mine = sorted((info.mtime, part) for part, info in obs.parts if part.attempt == obs.attempts)
    if len(mine) < 2 or mine[-1][0] <= mine[0][0]:
        return None, None
    span = mine[-1][0] - mine[0][0]
    later = [p for _, p in mine[1:]]
    return sum(p.records for p in later) / span, sum(part_bytes(p, sizes) for p in later) / span


def summarize(spec: RunSpec, observed: dict[str, ChunkObservation], decision: Decision) -> StatusReport:
    sizes = [p.size for p in spec.inputs]
    rows = []
    for chunk in sorted(observed):
        obs = observed[chunk]
        state = decision.states.get(chunk, ChunkState.PENDING)
        done = obs.done is not None
        bytes_done = obs.bytes_total if done else min(obs.bytes_total, _covered_bytes(obs, sizes))
        rec_rate, byte_rate = (None, None) if done or state is not ChunkState.RUNNING else _rates(obs, sizes)
        eta = (obs.bytes_total - bytes_done) / byte_rate if byte_rate else (0.0 if done else None)
        rows.append(
            ChunkRow(
                chunk=chunk,
                state=state.value,
                records_done=obs.records_committed,
                bytes_done=bytes_done,
                bytes_total=obs.bytes_total,
                attempts=obs.attempts,
                preemptions=obs.job.recoveries if obs.job else 0,
                records_per_s=round(rec_rate, 2) if rec_rate else None,
                eta_seconds=round(eta, 1) if eta is not None else None,
                reason=decision.reasons.get(chunk, ""),
            )
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    rate = sum(r.records_per_s or 0 for r in rows)
    etas = [r.eta_seconds for r in rows if r.state not in ("DONE", "FAILED", "CANCELLED")]
    totals = {
        "chunks": len(rows),
        "states": counts,
        "records_done": sum(r.records_done for r in rows),
        "bytes_done": sum(r.bytes_done for r in rows),
        "bytes_total": sum(r.bytes_total for r in rows),
        "records_per_s": round(rate, 2),
        "eta_seconds": max(etas) if etas and all(e is not None for e in etas) else (0.0 if not etas else None),
        "attempts": sum(r.attempts for r in rows),
        "preemptions": sum(r.preemptions for r in rows),
    }
    return StatusReport(spec.run_id, rows, totals)
