"""Given what the store and the backend say, decide what to do next. Pure: no I/O.

A run has chunks and workers. Workers pull chunks through claims (``chunkpilot.claims``), so
the launcher never assigns a chunk: it keeps enough worker jobs going, and reads each chunk's
state from its ``_SUCCESS`` marker and its claim.

**Chunks.** Done when ``_SUCCESS`` exists, whatever any job says. Running while a claim's
lease runs; when its holder's job is seen ended, its claim is released at once (``releases``)
rather than at lease expiry. Failed for good when its claim says so (fail-fast), or when its
attempts — one per claim — reached ``max_attempts`` (plus what pauses gave back).

**Workers.** Slots ``w0 .. w<M-1>``, each launched as attempt 1, 2, ... A slot is one job (one
machine); a job with several GPUs runs one engine process per GPU group, each claiming under its
own id (``w3``, ``w3e1``, ...: ``chunkpilot.names.engine_worker_id``), and all of them count as
the slot: a claim of ``w3e1`` is released when ``w3``'s job ends, and an expired one makes the
whole job hung (the machine is the unit that is launched, cancelled and relaunched). While chunks remain
unfinished the launcher keeps ``min(M, unfinished chunks)`` worker jobs active, relaunching
slots whose job ended; a job that ends with a configuration error (SkyPilot FAILED_SETUP /
FAILED_PRECHECKS, worker exit 2) is not relaunched. A running job whose claim's lease ran out
is hung (stopped, or stuck): it is cancelled and its slot relaunched — unless the backend says the
job is RECOVERING, or recovered it less than ``restart_grace_seconds`` ago (a spot preemption
SkyPilot restarts in place, setup included: cancelling it would throw that recovery away for a
cold start); its expired claim can be taken by any worker meanwhile. Once every chunk is
final, workers end by themselves (nothing left to claim); one still running
``finish_grace_seconds`` after the last chunk was done is asked to stop. At most ``max_launches_per_cycle`` launches
go out per cycle (the rest wait for the next ones). A slot is launched at most
``max_attempts x ceil(chunks / workers)`` times: every worker death costs at most the one
chunk attempt it held, so this bounds relaunches by the work the chunks' attempts allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from math import ceil

from chunkpilot.claims import Claim
from chunkpilot.names import slot_of, worker_id
from chunkpilot.control.backends.base import JobState, JobStatus


class ChunkState(str, Enum):
    DONE = "DONE"
    RUNNING = "RUNNING"  # a worker holds it
    PENDING = "PENDING"  # never claimed yet
    RETRYING = "RETRYING"  # its last attempt ended without a marker; the next worker free takes it
    FAILED = "FAILED"  # gave up: out of attempts, fail-fast, or no worker can run
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in (ChunkState.DONE, ChunkState.FAILED, ChunkState.CANCELLED)


@dataclass(frozen=True)
class ChunkView:
    """Everything observed about one chunk in one cycle."""

    chunk: str
    done: bool
    claim: Claim | None = None  # None: never claimed (or not read this cycle: done chunks)
    heartbeat_at: float | None = None  # last progress write
    done_at: float | None = None  # when its _SUCCESS was written

    @property
    def attempts(self) -> int:
        return self.claim.attempt if self.claim is not None else 0


@dataclass(frozen=True)
class WorkerView:
    """One worker slot: its latest launch and that launch's job."""

    slot: str
    attempts: int  # launches so far (the latest is number ``attempts``)
    job: JobState | None  # the latest launch's job, None if never launched
    launched_at: float | None = None  # of the latest launch


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    workers: int = 1
    missing_grace_seconds: float = 60.0  # how long a launched job may be unknown to the backend
    finish_grace_seconds: float = 30.0  # how long workers get to end by themselves once every chunk is final
    run_cancelled: bool = False
    # At most this many launches per cycle (None: no bound). A managed-jobs controller copes badly with
    # hundreds of launches at once; the rest wait for the next cycles. Set by the backend (``launch_batch``).
    max_launches_per_cycle: int | None = None
    # A job that (re)started running less than this long ago is not called hung for a claim it held
    # before: after a recovery SkyPilot runs the task's setup (the vLLM install: minutes) in RUNNING
    # before the worker can renew it. Its expired claim is takeable by any worker meanwhile.
    restart_grace_seconds: float = 900.0
    # Attempts pauses cost (by chunk id or worker slot): they do not count against the limits.
    extra_attempts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    slot: str
    attempt: int


@dataclass(frozen=True)
class Cancel:
    slot: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Ended:
    """Record that a launch's job has ended, with why (for status and history)."""

    slot: str
    attempt: int
    state: JobStatus
    reason: str


@dataclass(frozen=True)
class Release:
    """Hand ``chunk`` back now: its holder, launch ``attempt`` of ``slot``, was seen ended. ``slot`` is
    the claim's worker id: the slot itself, or one engine of its job (``w3e1``)."""

    chunk: str
    slot: str
    attempt: int
    reason: str


@dataclass
class Decision:
    states: dict[str, ChunkState] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    holders: dict[str, str] = field(default_factory=dict)  # chunk -> the job name-ish "w3-a2" holding it
    worker_states: dict[str, str] = field(default_factory=dict)  # slot -> its latest job's state, or why it is down
    launches: list[Launch] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Every chunk is final and no launch or cancel is pending."""
        return all(s.final for s in self.states.values()) and not self.launches and not self.cancels


def slot_limit(policy: Policy, chunks: int) -> int:
    """How many times one worker slot may be launched (see the module docstring)."""
    return policy.max_attempts * ceil(chunks / max(1, policy.workers))


def decide(chunks: list[ChunkView], workers: list[WorkerView], policy: Policy, now: float) -> Decision:
    """What to launch, cancel, release and record this cycle, and each chunk's state."""
    d = Decision()
    by_slot = {w.slot: w for w in workers}
    slots = [by_slot.get(worker_id(i), WorkerView(worker_id(i), 0, None)) for i in range(max(1, policy.workers))]
    numbered = {s.slot for s in slots}  # built once: a set per worker made a cycle O(workers^2)
    slots += [w for w in workers if w.slot not in numbered]  # from a run with more workers before
    active = {w.slot for w in slots if _active(w, policy, now)}

    # Jobs that ended: recorded, and their claims handed back below.
    ended: dict[str, Ended] = {}
    config_failures: dict[str, str] = {}
    for w in slots:
        if w.job is None or w.attempts == 0 or w.slot in active:
            continue
        reason = _end_reason(w.job)
        ended[w.slot] = Ended(w.slot, w.attempts, w.job.status, reason)
        if w.job.status is JobStatus.FAILED_CONFIG:
            config_failures[w.slot] = reason

    hung: dict[str, str] = {}
    for v in sorted(chunks, key=lambda v: v.chunk):
        claim = v.claim
        limit = policy.max_attempts + policy.extra_attempts.get(v.chunk, 0)
        if v.done:
            d.states[v.chunk] = ChunkState.DONE
            continue
        if policy.run_cancelled:
            d.states[v.chunk] = ChunkState.CANCELLED
            continue
        if claim is None:
            d.states[v.chunk] = ChunkState.PENDING
            continue
        if claim.state == "failed":
            d.states[v.chunk] = ChunkState.FAILED
            d.reasons[v.chunk] = f"attempt {claim.attempt}: {claim.reason} (not retried)"
            continue
        slot = slot_of(claim.worker)  # an engine of a several-GPU job (w3e1) holds claims for its job's slot
        holder = by_slot.get(slot)
        holder_is_latest = holder is not None and holder.attempts == claim.worker_attempt
        if claim.state == "held" and holder_is_latest and slot in ended:
            d.releases.append(Release(v.chunk, claim.worker, claim.worker_attempt, f"its worker's job ended: "
                                      f"{ended[slot].reason}"))
        elif claim.live(now):
            d.states[v.chunk] = ChunkState.RUNNING
            d.holders[v.chunk] = f"{claim.worker}-a{claim.worker_attempt}"
            continue
        elif claim.state == "held" and holder_is_latest and slot in active and not _restarting(holder, policy, now):
            hung[slot] = f"its claim on chunk {v.chunk} expired (lease not renewed: stopped or stuck)"
        last = "released" if claim.state == "released" else "lease expired"
        why = f"attempt {claim.attempt}: {last}" + (f" ({claim.reason})" if claim.reason else "")
        if claim.state == "done":
            d.states[v.chunk] = ChunkState.FAILED
            d.reasons[v.chunk] = "its claim says done but it has no _SUCCESS marker"
        elif claim.attempt >= limit:
            d.states[v.chunk] = ChunkState.FAILED
            d.reasons[v.chunk] = f"gave up after {claim.attempt} attempt(s); last: {why}"
        else:
            d.states[v.chunk] = ChunkState.RETRYING
            d.reasons[v.chunk] = why

    unfinished = [c for c, s in d.states.items() if not s.final]
    for slot, why in sorted(hung.items()):
        w = by_slot[slot]
        d.cancels.append(Cancel(slot, w.attempts, f"hung: {why}"))
        d.ended.append(Ended(slot, w.attempts, JobStatus.CANCELLED, f"hung: {why}"))
        active.discard(slot)
    last_done = max((v.done_at for v in chunks if v.done_at is not None), default=None)
    ending = not unfinished and (last_done is None or now - last_done >= policy.finish_grace_seconds)
    if ending or policy.run_cancelled:
        why = "run paused" if policy.run_cancelled else "every chunk is finished"
        for w in slots:
            if w.slot in active and w.job is not None and w.job.status is not JobStatus.CANCELLING:
                d.cancels.append(Cancel(w.slot, w.attempts, why))
    d.ended.extend(ended.values())

    limit = slot_limit(policy, len(chunks))
    wanted = 0 if policy.run_cancelled else min(policy.workers, len(unfinished)) - len(active)
    if policy.max_launches_per_cycle is not None:
        wanted = min(wanted, max(1, policy.max_launches_per_cycle))
    for w in slots:
        if w.slot in active:
            d.worker_states[w.slot] = w.job.status.value if w.job is not None else "PENDING"
        elif w.slot in config_failures:
            d.worker_states[w.slot] = f"FAILED: {config_failures[w.slot]}"
        elif w.attempts >= limit + policy.extra_attempts.get(w.slot, 0):
            d.worker_states[w.slot] = f"FAILED: launched {w.attempts} times, the most a worker may be"
        elif wanted > 0 and int(w.slot[1:]) < policy.workers:
            d.launches.append(Launch(w.slot, w.attempts + 1))
            d.worker_states[w.slot] = "LAUNCHING"
            wanted -= 1
        elif w.slot not in ended and w.attempts == 0 and int(w.slot[1:]) < policy.workers and unfinished \
                and not policy.run_cancelled:
            d.worker_states[w.slot] = "WAITING"  # past this cycle's launch bound: a later cycle launches it
        else:
            d.worker_states[w.slot] = ended[w.slot].state.value if w.slot in ended else "NOT LAUNCHED"

    if unfinished and not active and not d.launches:  # nobody can answer what is left
        down = "; ".join(f"{s}: {r}" for s, r in sorted(config_failures.items())) or "no worker may be launched again"
        for c in unfinished:
            d.states[c] = ChunkState.FAILED
            d.reasons[c] = f"no worker can run ({down})" + (f"; last: {d.reasons[c]}" if c in d.reasons else "")
    return d


# Below this many committed records a run's error rate says too little to stop it on.
ERROR_BUDGET_MIN_RECORDS = 100


def error_budget_exceeded(records: int, errors: int, max_error_rate: float, finished: bool) -> bool:
    """Whether the share of error records is past the run's budget (``max_error_rate`` 1: never).

    Judged once ERROR_BUDGET_MIN_RECORDS records are committed, or at the end of a smaller run.
    """
    if max_error_rate >= 1 or records == 0 or (records < ERROR_BUDGET_MIN_RECORDS and not finished):
        return False
    return errors / records > max_error_rate


def _active(w: WorkerView, policy: Policy, now: float) -> bool:
    if w.job is None or w.attempts == 0:
        return False
    if w.job.status is JobStatus.MISSING:  # launched moments ago and not visible yet, or lost
        return w.launched_at is not None and now - w.launched_at <= policy.missing_grace_seconds
    return w.job.status.active


def _end_reason(job: JobState) -> str:
    if job.status is JobStatus.SUCCEEDED:
        return "nothing left to claim"
    if job.status is JobStatus.MISSING:
        return "job not found by the backend (launch lost?)" + (f": {job.detail}" if job.detail else "")
    return f"{job.status.value.lower()}" + (f": {job.detail}" if job.detail else "")


def _restarting(worker: "WorkerView | None", policy: Policy, now: float) -> bool:
    """The backend is restarting this worker's job in place after a preemption (RECOVERING), or
    restarted it less than ``restart_grace_seconds`` ago (its setup may still run)."""
    job = worker.job if worker is not None else None
    if job is None:
        return False
    if job.status is JobStatus.RECOVERING:
        return True
    return job.recoveries > 0 and job.running_since is not None and now - job.running_since < policy.restart_grace_seconds
