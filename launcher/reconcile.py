"""Given what the store and the backend say, decide what to do next. Pure: no I/O.

The store is the truth: a chunk is done when ``_SUCCESS`` exists, whatever its
job says. A chunk without it whose latest job has ended — failed, vanished,
cancelled by someone else, or even SUCCEEDED — gets a new attempt, up to
``max_attempts``. A configuration failure (SkyPilot FAILED_SETUP/FAILED_PRECHECKS,
worker exit 2) stops the chunk and is reported. A running job whose heartbeat
has not moved for ``stuck_seconds`` is cancelled and replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from launcher.backends.base import JobState, JobStatus


class ChunkState(str, Enum):
    DONE = "DONE"
    RUNNING = "RUNNING"
    PENDING = "PENDING"  # waiting for a launch slot or for its job to start
    RETRYING = "RETRYING"  # latest attempt ended without a marker; a new one is due
    FAILED = "FAILED"  # gave up: out of attempts or a configuration error
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in (ChunkState.DONE, ChunkState.FAILED, ChunkState.CANCELLED)


@dataclass(frozen=True)
class ChunkView:
    """Everything observed about one chunk in one cycle."""

    chunk: str
    done: bool
    attempts: int  # attempts launched so far (the latest is number ``attempts``)
    job: JobState | None  # state of the latest attempt's job, None if never launched
    launched_at: float | None = None  # of the latest attempt
    heartbeat_at: float | None = None  # last progress write


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    parallel: int = 0  # max concurrently active jobs; 0 = no limit
    stuck_seconds: float = 0.0  # 0 = never declare a job stuck
    missing_grace_seconds: float = 60.0  # how long a launched job may be unknown to the backend
    run_cancelled: bool = False
    # Attempts a pause (cancel, then watch) cost a chunk: they do not count against max_attempts.
    extra_attempts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    chunk: str
    attempt: int


@dataclass(frozen=True)
class Cancel:
    chunk: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Ended:
    """Record that an attempt's job has ended, with why (for status and history)."""

    chunk: str
    attempt: int
    state: JobStatus
    reason: str


@dataclass
class Decision:
    states: dict[str, ChunkState] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    launches: list[Launch] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Every chunk is final and no launch or cancel is pending."""
        return all(s.final for s in self.states.values()) and not self.launches and not self.cancels


def decide(views: list[ChunkView], policy: Policy, now: float) -> Decision:
    """What to launch, cancel and record this cycle, and each chunk's state."""
    d = Decision()
    active = 0
    want_launch: list[ChunkView] = []
    for v in sorted(views, key=lambda v: v.chunk):
        job = v.job
        job_active = job is not None and job.status.active and not _missing_too_long(v, policy, now)
        if v.done:
            d.states[v.chunk] = ChunkState.DONE
            continue
        if policy.run_cancelled:
            d.states[v.chunk] = ChunkState.CANCELLED
            if job_active and job.status is not JobStatus.CANCELLING:
                d.cancels.append(Cancel(v.chunk, v.attempts, "run cancelled"))
            continue
        if v.attempts == 0 or job is None:
            d.states[v.chunk] = ChunkState.PENDING
            want_launch.append(v)
            continue
        if job.status is JobStatus.MISSING and not _missing_too_long(v, policy, now):
            d.states[v.chunk] = ChunkState.PENDING  # launched moments ago; not visible yet
            active += 1
            continue
        if job_active:
            if _stuck(v, policy, now):
                d.cancels.append(Cancel(v.chunk, v.attempts, f"no heartbeat for {policy.stuck_seconds:.0f}s"))
                d.ended.append(Ended(v.chunk, v.attempts, JobStatus.CANCELLED, "stuck: heartbeat stopped"))
                want_launch.append(v)
                d.states[v.chunk] = ChunkState.RETRYING
                continue
            active += 1
            d.states[v.chunk] = ChunkState.PENDING if job.status is JobStatus.PENDING else ChunkState.RUNNING
            continue
        # The latest attempt has ended without a marker.
        reason = _end_reason(job)
        d.ended.append(Ended(v.chunk, v.attempts, job.status, reason))
        if job.status is JobStatus.FAILED_CONFIG:
            d.states[v.chunk] = ChunkState.FAILED
            d.reasons[v.chunk] = f"attempt {v.attempts}: {reason} (not retried)"
            continue
        want_launch.append(v)
        d.states[v.chunk] = ChunkState.RETRYING
        d.reasons[v.chunk] = f"attempt {v.attempts}: {reason}"

    for v in want_launch:
        if v.attempts >= policy.max_attempts + policy.extra_attempts.get(v.chunk, 0):
            d.states[v.chunk] = ChunkState.FAILED
            d.reasons[v.chunk] = f"gave up after {v.attempts} attempt(s); last: {d.reasons.get(v.chunk, 'ended')}"
            continue
        if policy.parallel and active >= policy.parallel:
            continue  # stays PENDING/RETRYING until a slot frees up
        d.launches.append(Launch(v.chunk, v.attempts + 1))
        active += 1
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


def _missing_too_long(v: ChunkView, policy: Policy, now: float) -> bool:
    if v.job is None or v.job.status is not JobStatus.MISSING:
        return False
    return v.launched_at is None or now - v.launched_at > policy.missing_grace_seconds


def _stuck(v: ChunkView, policy: Policy, now: float) -> bool:
    if not policy.stuck_seconds or v.job is None or v.job.status is not JobStatus.RUNNING:
        return False
    last_sign_of_life = max(filter(None, (v.heartbeat_at, v.launched_at)), default=None)
    return last_sign_of_life is not None and now - last_sign_of_life > policy.stuck_seconds


def _end_reason(job: JobState) -> str:
    if job.status is JobStatus.SUCCEEDED:
        return "job succeeded but wrote no _SUCCESS marker"
    if job.status is JobStatus.MISSING:
        return "job not found by the backend (launch lost?)" + (f": {job.detail}" if job.detail else "")
    return f"{job.status.value.lower()}" + (f": {job.detail}" if job.detail else "")
