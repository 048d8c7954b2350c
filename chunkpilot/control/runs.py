"""Finding runs in a store, opening one, and saying what state it is in and what can move it on.

A chunk a worker stopped for good (its heartbeat says ``failed``: worker exit 2, fail-fast or a
configuration error) is relaunched by nothing — ``watch`` retries no configuration error, and
the fail-fast threshold is the run's own (``run.json``), which no option of ``watch`` reaches.
So a run whose unfinished chunks are all stopped so is *failed*, not incomplete, and advice
never points at ``launcher watch`` for it.

A chunk whose claims used up its attempts (``max_attempts`` plus what pauses gave back, its last
claim released or expired) is not taken again either; it has failed too, but ``launcher watch
RUN --max-attempts K`` (K above what it used) gives it more, so that is the advice for it.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chunkpilot import layout
from chunkpilot.claims import decide_take, read_allowance, read_claim
from chunkpilot.chunks import run_chunk_ids
from chunkpilot.errors import ChunkpilotError, NotFoundError, RunNotFoundError
from chunkpilot.names import validate_run_name
from chunkpilot.spec import CancelMarker, Progress, ResumeAllowance, RunSpec
from chunkpilot.store import Store, open_store

READ_CONCURRENCY = 16
# The worker's fail-fast reason (worker/run.py ``_check_fail_fast``) names the one error code.
_FAIL_FAST = re.compile(r"the first \d+ records all failed with ([\w.-]+)")
RESUBMIT = ("nothing resumes it (watch relaunches no chunk stopped this way): fix the input or options and submit "
            "a new run (--max-error-rate 1 turns fail-fast off)")


@dataclass(frozen=True)
class OpenRun:
    store_uri: str  # the store root
    run_store: Store  # rooted at <store>/<run_id>
    spec: RunSpec

    @property
    def run_uri(self) -> str:
        return self.run_store.uri

    @property
    def cancelled(self) -> bool:
        try:
            self.run_store.head(layout.CANCELLED)
            return True
        except NotFoundError:
            return False

    def cancel_marker(self) -> CancelMarker | None:
        """Why the run is paused, or None if it is not."""
        try:
            return CancelMarker.from_json(self.run_store.get(layout.CANCELLED))
        except NotFoundError:
            return None

    def allowance(self) -> ResumeAllowance:
        return read_allowance(self.run_store)


def open_run(store_uri: str, run_id: str) -> OpenRun:
    validate_run_name(run_id)
    run_store = open_store(store_uri).child(run_id)
    try:
        spec = RunSpec.from_json(run_store.get(layout.RUN_SPEC))
    except NotFoundError:
        raise RunNotFoundError(f"no run {run_id!r} in {store_uri} (see `launcher runs --store {store_uri}`)") from None
    return OpenRun(store_uri, run_store, spec)


def stopped_chunks(run_store: Store, chunks: list[str]) -> dict[str, str]:
    """Those of ``chunks`` a worker stopped for good, each with its reason (from their heartbeats)."""

    def read(chunk: str) -> Progress | None:
        try:
            return Progress.from_json(run_store.get(layout.progress(chunk)))
        except (NotFoundError, ValueError, TypeError):
            return None

    if not chunks:
        return {}
    with ThreadPoolExecutor(min(READ_CONCURRENCY, len(chunks)), thread_name_prefix="run-state") as pool:
        beats = list(pool.map(read, chunks))
    return {chunk: beat.reason for chunk, beat in zip(chunks, beats) if beat is not None and beat.state == "failed"}


def exhausted_chunks(run_store: Store, chunks: list[str], spec: RunSpec, allowance: ResumeAllowance,
                     now: float | None = None) -> dict[str, int]:
    """Those of ``chunks`` whose attempts are used up (no worker takes them again), each with the
    attempts it used — the same rule a worker applies when it looks for a chunk (``decide_take``)."""

    def used(chunk: str) -> int | None:
        try:
            claim, _ = read_claim(run_store, chunk)
        except (ValueError, TypeError, KeyError):
            return None
        limit = allowance.attempts_for(chunk, spec.max_attempts)
        if claim is None or decide_take(claim, "", 0, now if now is not None else time.time(), limit)[0] != "exhausted":
            return None
        return claim.attempt

    if not chunks:
        return {}
    with ThreadPoolExecutor(min(READ_CONCURRENCY, len(chunks)), thread_name_prefix="run-state") as pool:
        found = list(pool.map(used, chunks))
    return {chunk: n for chunk, n in zip(chunks, found) if n is not None}


def fail_fast_code(reasons: dict[str, str]) -> str | None:
    """The error code the chunks stopped fail-fast on, when they all did on one code."""
    codes = {m.group(1) if (m := _FAIL_FAST.search(reason)) else None for reason in reasons.values()}
    return codes.pop() if len(codes) == 1 and None not in codes else None


def why_stopped(reasons: dict[str, str]) -> str:
    """What stopped these chunks, in a few words: ``fail-fast on CODE`` or the first reason."""
    code = fail_fast_code(reasons)
    if code is not None:
        return f"fail-fast on {code}: the first records of each failed with {code}"
    first = next(iter(reasons.values()), "")
    return first if len(first) <= 200 else first[:197] + "..."


@dataclass(frozen=True)
class RunEntry:
    """A run as ``launcher runs`` lists it; ``stopped``: its chunks stopped for good, with why;
    ``exhausted``: its chunks out of attempts, with the attempts each used."""

    spec: RunSpec
    chunks_done: int
    paused: bool
    stopped: dict[str, str] = field(default_factory=dict)
    chunks: int = 0  # the run's chunks now, split remainders included (0: as planned)
    exhausted: dict[str, int] = field(default_factory=dict)

    @property
    def chunks_total(self) -> int:
        return self.chunks or len(self.spec.chunks)

    @property
    def state(self) -> str:
        """done; failed (every chunk not done was stopped for good or ran out of attempts: nothing
        finishes it without a change); paused; or incomplete (something can still finish it)."""
        if self.chunks_done >= self.chunks_total:
            return "done"
        given_up = len(self.stopped) + len(self.exhausted)
        if given_up and self.chunks_done + given_up >= self.chunks_total:
            return "failed"
        return "paused" if self.paused else "incomplete"

    @property
    def resume_command(self) -> str | None:
        """What would finish a failed run, when something would: more attempts for chunks that ran out
        (``launcher watch``). None when a chunk was stopped for good — only a new run can do that."""
        if self.state != "failed" or self.stopped:
            return None
        return f"launcher watch {self.spec.run_id} --max-attempts {max(self.exhausted.values()) + 1}"

    @property
    def finished(self) -> bool:
        """Nothing more will happen to it without a new run."""
        return self.state in ("done", "failed")


def run_entry(run: OpenRun) -> RunEntry:
    """One run's entry, from a listing of its outputs and the heartbeats of its chunks not done."""
    done = {chunk for chunk, name in map(layout.parse_output, run.run_store.keys(layout.OUTPUTS)) if name == layout.DONE_NAME}
    ids = run_chunk_ids(run.run_store, run.spec)
    return _entry(run.run_store, run.spec, ids, done, run.cancelled)


def _entry(run_store: Store, spec: RunSpec, ids: list[str], done: set[str], paused: bool) -> RunEntry:
    left = [c for c in ids if c not in done]
    stopped = stopped_chunks(run_store, left)
    exhausted = exhausted_chunks(run_store, [c for c in left if c not in stopped], spec, read_allowance(run_store))
    return RunEntry(spec, sum(c in done for c in ids), paused, stopped, len(ids), exhausted)


def list_runs(store_uri: str) -> list[RunEntry]:
    """Every run in the store, oldest first, from one listing of the store (plus each run.json, and
    the heartbeats of the chunks not done)."""
    store = open_store(store_uri)
    runs: list[str] = []
    done: dict[str, set[str]] = {}
    paused: set[str] = set()
    for key in store.keys(""):
        run_id, run_key = layout.split_run_key(key)
        if run_key == layout.RUN_SPEC:
            runs.append(run_id)
        elif run_key == layout.CANCELLED:
            paused.add(run_id)
        elif run_key.startswith(layout.OUTPUTS) and layout.parse_output(run_key)[1] == layout.DONE_NAME:
            done.setdefault(run_id, set()).add(layout.parse_output(run_key)[0])
    entries = []
    for run_id in runs:
        try:
            spec = RunSpec.from_json(store.get(layout.run_key(run_id, layout.RUN_SPEC)))
        except (ValueError, KeyError, TypeError, ChunkpilotError):
            continue
        finished = done.get(run_id, set())
        ids = run_chunk_ids(store.child(run_id), spec)
        entries.append(_entry(store.child(run_id), spec, ids, finished, run_id in paused))
    return sorted(entries, key=lambda e: e.spec.created_at)
