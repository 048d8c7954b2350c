"""The job-backend seam: how a worker's job starts, is polled and is cancelled. Nothing else.

Everything shared — which chunks to launch, when to relaunch, the attempt
records — lives in ``chunkpilot.control.reconcile`` and ``chunkpilot.control.watch``; a backend
differs from another only in these three calls (datatrove's executor shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from chunkpilot.spec import RunSpec


class JobStatus(str, Enum):
    """Backend job states, normalized. ``_SUCCESS`` in the store, not SUCCEEDED, means done."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RECOVERING = "RECOVERING"  # preempted, being restarted by the backend
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # worth a new attempt
    FAILED_CONFIG = "FAILED_CONFIG"  # setup/prechecks/config error: retrying will not help
    CANCELLED = "CANCELLED"
    MISSING = "MISSING"  # the backend does not know this job (launch lost, or purged)

    @property
    def active(self) -> bool:
        return self in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.RECOVERING, JobStatus.CANCELLING)


@dataclass(frozen=True)
class JobState:
    """A job as its backend sees it: its state and the facts it knows first-hand — when the job
    started and ended by the backend's own clock, and what it runs on (``resources``: cloud,
    region, zone, accelerators, instance_type, spot; whichever the backend says)."""

    status: JobStatus
    detail: str = ""
    recoveries: int = 0  # preemptions the backend recovered from
    started_at: float | None = None
    ended_at: float | None = None
    # When the job last (re)started running on a machine by the backend's clock (SkyPilot: the later of
    # its first start and its last recovery), or None where the backend cannot say. After that the
    # task's setup runs before the worker can renew a claim it held before a preemption.
    running_since: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchRequest:
    """One job to start: launch ``attempt`` of worker ``worker`` (``w3``) of ``spec``, named ``name``.
    The job runs ``python -m worker --run <run_uri> --worker <worker> --attempt <attempt>``."""

    spec: RunSpec
    run_uri: str  # the run's folder in the store: <store>/<run_id>
    worker: str
    attempt: int
    name: str

    def worker_args(self) -> list[str]:
        return ["--run", self.run_uri, "--worker", self.worker, "--attempt", str(self.attempt)]


class Backend(Protocol):
    name: str

    def launch(self, requests: list[LaunchRequest]) -> list[str | None]:
        """Start the jobs; return each one's job id (None where the answer was lost)."""
        ...

    def poll(self, run_id: str, names: list[str]) -> dict[str, JobState]:
        """The state of each named job, in one round trip where the backend allows."""
        ...

    def cancel(self, run_id: str, names: list[str]) -> None:
        """Ask the named jobs to stop; idempotent."""
        ...

    def wait(self, seconds: float) -> None:
        """Sleep until the next poll is due: ``seconds``, or less when a job may have changed
        state meanwhile (the local backend wakes when a worker exits, so a freed slot is
        filled at once)."""
        ...
