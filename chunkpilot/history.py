"""A worker process's history of one attempt: ``history/<chunk>/a<attempt>.<life>.jsonl``.

Pure: events in, bytes out and back; ``worker.journal`` does the writing.

Each worker process owns one object, claimed put-if-absent on the next free ``life``
number (SkyPilot restarting a preempted job re-runs the same attempt: that second life
gets its own object instead of overwriting the first), and rewrites it whole at its
heartbeats. Nobody else writes it, so there is no read-modify-write race with the
launcher, whose facts (launch, the backend's timestamps, resources, the end it saw) go
to the attempt record (``jobs/<chunk>/a<attempt>.json``) it alone writes.

One JSON event per line, in time order (``t``: seconds since the epoch)::

    {"event": "start", "t": .., "host": .., "resources": {"cloud": .., "region": .., ..}}
    {"event": "ready", "t": ..}                         the engine is loaded
    {"event": "claim", "t": .., "chunk": .., "chunk_attempt": ..}   a warm worker took a chunk: the
                                                        commits after it, until the next claim, are that chunk's
    {"event": "commit", "t": .., "t0": .., "commits": 1, "records": .., "errors": ..,
     "prompt_tokens": .., "completion_tokens": .., "end": [input, offset]}
    {"event": "beat", "t": .., "answered": .., "committed": .., "held": ..}    the latest heartbeat only
    {"event": "end", "t": .., "outcome": "done|stopped|idle|failed|crashed", "exit_code": .., "reason": ..}
                                                        (idle: stopped between chunks, holding none)

A commit event counts the records this life committed in ``[t0, t]`` (``end``: just past
the last of them). Bounded: past ``MAX_COMMITS`` commit events, neighbours are merged in
pairs (sums, the later end) — never across a ``claim``, so each commit stays its chunk's — and
a week-long attempt keeps about that many at a coarser grain; an event is ~150 bytes. A process killed outright (SIGKILL, a reclaimed spot VM)
writes no end event: its last beat says how many records it had answered but not yet saved
(``answered - committed - held``: neither in a part nor in the held object) — the work a
preemption throws away, as of that beat.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

MAX_COMMITS = 256
# SkyPilot tells a job where it runs in SKYPILOT_CLUSTER_INFO (JSON); these keys are kept, nothing else.
CLUSTER_INFO_KEYS = ("cloud", "region", "zone")


def resources_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Where this process runs, as far as its environment says: SkyPilot's cluster info
    (cloud, region, zone) and GPUs per node. Never a value outside those keys."""
    out: dict[str, Any] = {}
    try:
        info = json.loads(environ.get("SKYPILOT_CLUSTER_INFO", "") or "{}")
    except ValueError:
        info = {}
    if isinstance(info, dict):
        out.update({k: str(info[k]) for k in CLUSTER_INFO_KEYS if info.get(k)})
    gpus = environ.get("SKYPILOT_NUM_GPUS_PER_NODE", "")
    if gpus.strip().isdigit():
        out["gpus"] = int(gpus)
    return out


@dataclass
class History:
    """The events of one worker life, appended in time order."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, event: str, t: float, **facts: Any) -> None:
        """Append an event (a ``beat`` replaces the previous beat)."""
        if event == "beat" and self.events and self.events[-1]["event"] == "beat":
            self.events.pop()
        self.events.append({"event": event, "t": round(t, 3), **facts})

    def commit(self, t: float, t0: float, records: int, errors: int, prompt_tokens: int, completion_tokens: int,
               end: tuple[int, int]) -> None:
        beat = self.events.pop() if self.events and self.events[-1]["event"] == "beat" else None
        self.events.append({"event": "commit", "t": round(t, 3), "t0": round(t0, 3), "commits": 1, "records": records,
                            "errors": errors, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "end": list(end)})
        if beat is not None:
            self.events.append(beat)
        if sum(e["event"] == "commit" for e in self.events) > MAX_COMMITS:
            self.events = compact(self.events)

    def to_bytes(self) -> bytes:
        return b"".join(json.dumps(e, separators=(",", ":"), sort_keys=True).encode() + b"\n" for e in self.events)


def compact(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge neighbouring commit events in pairs: half as many, same totals, same span. Commits
    on either side of a ``claim`` are different chunks': they are never merged."""
    out: list[dict[str, Any]] = []
    waiting: int | None = None  # index in ``out`` of a commit event with no partner yet
    for e in events:
        if e["event"] != "commit":
            out.append(e)
            if e["event"] == "claim":
                waiting = None
        elif waiting is None:
            waiting = len(out)
            out.append(e)
        else:
            first = out[waiting]
            merged = {**e, "t0": first["t0"], "commits": first["commits"] + e["commits"]}
            for k in ("records", "errors", "prompt_tokens", "completion_tokens"):
                merged[k] = first[k] + e[k]
            out[waiting] = merged
            waiting = None
    return out


def parse(body: bytes) -> list[dict[str, Any]]:
    """The events of a history object; a cut or foreign line is skipped."""
    events = []
    for line in body.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("event"), str) and isinstance(e.get("t"), (int, float)):
            events.append(e)
    return events


@dataclass(frozen=True)
class Life:
    """What one worker process's history says, summed up."""

    chunk: str
    attempt: int
    life: int
    started_at: float
    ready_at: float | None
    last_seen: float  # its latest event
    last_commit_at: float | None
    committed: int  # records this life committed
    errors: int
    prompt_tokens: int
    completion_tokens: int
    answered_uncommitted: int  # at its last beat: answered but not saved (lost if it was killed then)
    outcome: str | None  # done | stopped | failed | crashed; None: no end event (killed, or still running)
    exit_code: int | None = None
    reason: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    commits: tuple[dict[str, Any], ...] = ()
    # A warm worker's claim events (which chunk it answered from when), each with ``commits_before``:
    # how many of ``commits`` came before it, so commits[claims[i].commits_before:claims[i + 1]...] are its chunk's.
    claims: tuple[dict[str, Any], ...] = ()


def summarize(chunk: str, attempt: int, life: int, events: Iterable[dict[str, Any]]) -> Life | None:
    """A life from its events (None when it has no start event)."""
    events = list(events)
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        return None
    ready = next((e for e in events if e["event"] == "ready"), None)
    commits = tuple(e for e in events if e["event"] == "commit")
    beat = next((e for e in reversed(events) if e["event"] == "beat"), None)
    end = next((e for e in reversed(events) if e["event"] == "end"), None)
    committed = sum(int(e.get("records", 0)) for e in commits)
    uncommitted = 0
    if beat is not None and end is None:
        uncommitted = max(0, int(beat.get("answered", 0)) - int(beat.get("committed", 0)) - int(beat.get("held", 0)))
    return Life(
        chunk=chunk, attempt=attempt, life=life,
        started_at=float(start["t"]),
        ready_at=float(ready["t"]) if ready else None,
        last_seen=max(float(e["t"]) for e in events),
        last_commit_at=float(commits[-1]["t"]) if commits else None,
        committed=committed,
        errors=sum(int(e.get("errors", 0)) for e in commits),
        prompt_tokens=sum(int(e.get("prompt_tokens", 0)) for e in commits),
        completion_tokens=sum(int(e.get("completion_tokens", 0)) for e in commits),
        answered_uncommitted=uncommitted,
        outcome=str(end["outcome"]) if end else None,
        exit_code=end.get("exit_code") if end else None,
        reason=str(end.get("reason", "")) if end else "",
        resources=dict(start.get("resources") or {}),
        commits=commits,
        claims=_claims(events),
    )


def _claims(events: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    out, commits = [], 0
    for e in events:
        if e["event"] == "commit":
            commits += 1
        elif e["event"] == "claim":
            out.append({**e, "commits_before": commits})
    return tuple(out)


_KEY = re.compile(r"^history/(w?[0-9]+)/a([0-9]+)\.([0-9]+)\.jsonl$")


def parse_key(key: str) -> tuple[str, int, int] | None:
    """``history/0003/a2.1.jsonl`` -> ("0003", 2, 1)."""
    m = _KEY.match(key)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None
