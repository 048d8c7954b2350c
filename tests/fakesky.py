"""A fake SkyPilot SDK for tests: the four calls SkyBackend makes, on this machine.

It mirrors ``sky.jobs.launch`` (with ``pool=`` and ``num_jobs=``), ``sky.jobs.queue_v2``,
``sky.jobs.cancel``, ``sky.jobs.pool_apply`` / ``pool_status`` / ``pool_down`` and
``sky.get`` — same signatures (``test_sky.py`` compares them with the installed
package), request ids resolved by ``get``, real ``ManagedJobStatus`` values and
real ``ManagedJobRecord`` rows, ``ClusterNotUpError`` while no job exists (no
jobs controller yet) — and behaves like a managed-jobs controller: each job
goes PENDING -> STARTING -> RUNNING and runs the task's own ``run`` script with bash (its
``python`` is this test's: the fake puts a one-line ``activate`` at ``$CHUNKPILOT_VENV``) with
the task's envs and secrets, ``SKYPILOT_NUM_GPUS_PER_NODE`` (``gpus_per_node``, else the launched
accelerator count) and, for a ``num_jobs`` launch, ``SKYPILOT_JOB_RANK`` 0..N-1 by sorted job id,
as SkyPilot does. A pooled job runs on the pool's "warm worker": its own setup and file mounts
are ignored, the pool's task must ship the wheel; honouring the task's ``job_recovery`` (``recover_on_exit_codes``,
``max_restarts_on_errors``) the way SkyPilot's controller does.

Faults are scripted per job name (``fake.faults[name] = PREEMPT``):

* ``PREEMPT`` — once the worker has committed a part: RECOVERING, the worker is
  SIGKILLed, and after a moment restarted from scratch (``recovery_count`` + 1).
* ``FAILED_CONTROLLER`` — once the worker has committed a part, it is killed and
  the job ends FAILED_CONTROLLER.
* ``FAILED_SETUP`` — the worker never starts; the job ends FAILED_SETUP.
* ``SUCCEED_WITHOUT_MARKER`` — the job ends SUCCEEDED without running the worker.
* ``LOSE_LAUNCH_REPLY`` — the job is launched, but ``get`` on the launch request
  raises ``ApiServerConnectionError`` (the reply was lost).
* ``REFUSE_LAUNCH`` — no job; ``get`` on the launch request raises
  ``NoCloudAccessError``, as SkyPilot does when no cloud is enabled.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import click
import sky
from sky.jobs import constants as jobs_constants
from sky.serve import serve_utils
from sky.serve.serve_state import ReplicaStatus, ServiceStatus
from sky.jobs.client.sdk import AUTO_JOB_GROUP
from sky.jobs.state import ManagedJobStatus
from sky.schemas.api.responses import ManagedJobRecord

from chunkpilot.fleet import job_identity
from chunkpilot.names import slot_of

PREEMPT = "preempt"
FAILED_CONTROLLER = "failed_controller"
FAILED_SETUP = "failed_setup"
SUCCEED_WITHOUT_MARKER = "succeed_without_marker"
LOSE_LAUNCH_REPLY = "lose_launch_reply"
REFUSE_LAUNCH = "refuse_launch"

S = ManagedJobStatus
# Where the fake's jobs "run", as SkyPilot reports it for a cluster it launched.
FAKE_CLOUD, FAKE_REGION, FAKE_ZONE = "AWS", "us-east-1", "us-east-1a"
FAKE_INSTANCE_TYPES = {"L4": "g6.xlarge", "A10G": "g5.xlarge", "T4": "g4dn.xlarge"}


def launched_resources(task) -> tuple[str, int, bool]:
    """(accelerator, count, spot) a launched cluster would have: of the task's choices, the first
    the fake knows an instance type for (in FAKE_INSTANCE_TYPES' order), as an optimizer would
    pick one; L4:1 on demand for a task without accelerators."""
    choices = []
    for r in task.resources:
        for name, count in (r.accelerators or {"L4": 1}).items():
            choices.append((name, int(count), bool(r.use_spot)))
    order = list(FAKE_INSTANCE_TYPES)
    choices.sort(key=lambda c: (order.index(c[0]) if c[0] in order else len(order), c[0]))
    return choices[0] if choices else ("L4", 1, False)


@dataclass
class FakeJob:
    job_id: int
    name: str
    task: Any  # the sky.Task that was launched
    envs: dict[str, str]
    secrets: dict[str, str]
    status: ManagedJobStatus = S.PENDING
    recovery_count: int = 0
    failure_reason: Optional[str] = None
    submitted_at: float = field(default_factory=time.time)
    start_at: Optional[float] = None
    last_recovered_at: Optional[float] = None  # when its last recovery ended (RECOVERING -> RUNNING)
    end_at: Optional[float] = None
    process: Optional[subprocess.Popen] = None
    worker_starts: int = 0
    cancel_requested: bool = False
    thread: Optional[threading.Thread] = None
    fault_chunk: Optional[str] = None  # the chunk the worker held when its PREEMPT / FAILED_CONTROLLER fault hit
    rank: int = 0  # SKYPILOT_JOB_RANK: its place in its launch request
    num_jobs: int = 1
    pool: Optional[str] = None

    def record(self, fields: Optional[Sequence[str]]) -> ManagedJobRecord:
        values = {
            "job_id": self.job_id, "task_id": 0, "job_name": self.name, "task_name": self.name,
            "status": self.status, "recovery_count": self.recovery_count, "failure_reason": self.failure_reason,
            "submitted_at": self.submitted_at, "end_at": self.end_at, "workspace": "default",
            "resources": "1x[L4:1]", "job_duration": (self.end_at or time.time()) - self.submitted_at,
            "details": None, "pool": self.pool, "start_at": self.start_at, "last_recovered_at": self.last_recovered_at,
        }
        if self.start_at is not None:  # a cluster is up: SkyPilot fills these from its handle
            accelerator, count, spot = launched_resources(self.task)
            values.update(cloud=FAKE_CLOUD, region=FAKE_REGION, zone=FAKE_ZONE, accelerators={accelerator: count},
                          cluster_resources_full=(f"1x{'[spot]' if spot else ''}(gpus={accelerator}:{count}, cpus=4, "
                                                  f"mem=16, {FAKE_INSTANCE_TYPES.get(accelerator, 'fake.xlarge')}, disk=256)"))
        if fields is not None:
            wanted = set(fields) | {"status", "job_id"}  # SkyPilot always adds these two
            values = {k: v for k, v in values.items() if k in wanted}
        return ManagedJobRecord(**values)


class FakeJobs:
    """``sky.jobs``: launch, queue_v2 and cancel, each returning a request id for ``get``."""

    def __init__(self, fake: "FakeSky"):
        self._fake = fake

    def launch(
        self,
        task: Union["sky.Task", "sky.Dag"],
        name: Optional[str] = None,
        pool: Optional[str] = None,
        num_jobs: Optional[int] = None,
        job_group: Any = AUTO_JOB_GROUP,
        _need_confirmation: bool = False,
    ):
        return self._fake._launch(task, name, pool, num_jobs)

    def queue_v2(
        self,
        refresh: bool,
        skip_finished: bool = False,
        all_users: bool = False,
        job_ids: Optional[List[int]] = None,
        limit: Optional[int] = None,
        fields: Optional[Sequence[str]] = jobs_constants.DEFAULT_MANAGED_JOB_FIELDS,
        sort_by: Optional[str] = None,
        sort_order: Optional[str] = None,
        statuses: Optional[List[str]] = None,
        submitted_after: Optional[float] = None,
        submitted_before: Optional[float] = None,
        infra_match: Optional[str] = None,
        name_match: Optional[str] = None,
    ):
        self._fake.calls.append(("queue_v2", {"name_match": name_match, "job_ids": job_ids, "fields": fields}))
        return self._fake._request(lambda: self._fake._queue(skip_finished, job_ids, fields, statuses, name_match, limit))

    def cancel(
        self,
        name: Optional[str] = None,
        job_ids: Optional[Sequence[int]] = None,
        all: bool = False,  # noqa: A002 - SkyPilot's own parameter name
        all_users: bool = False,
        pool: Optional[str] = None,
        graceful: bool = False,
        graceful_timeout: Optional[int] = None,
        task: Optional[Union[str, int]] = None,
    ):
        self._fake.calls.append(("cancel", {"name": name, "job_ids": list(job_ids or [])}))
        return self._fake._request(lambda: self._fake._cancel(name, job_ids, all))

    def pool_apply(
        self,
        task: Optional[Union["sky.Task", "sky.Dag"]],
        pool_name: str,
        mode: "serve_utils.UpdateMode",
        workers: Optional[int] = None,
        _need_confirmation: bool = False,
    ):
        self._fake.calls.append(("pool_apply", {"pool_name": pool_name, "workers": workers, "mode": mode}))
        return self._fake._request(lambda: self._fake._pool_apply(task, pool_name, workers))

    def pool_status(self, pool_names: Optional[Union[str, List[str]]]):
        self._fake.calls.append(("pool_status", {"pool_names": pool_names}))
        return self._fake._request(lambda: self._fake._pool_status(pool_names))

    def pool_down(self, pool_names: Optional[Union[str, List[str]]], all: bool = False,  # noqa: A002
                  purge: bool = False):
        self._fake.calls.append(("pool_down", {"pool_names": pool_names, "all": all}))
        return self._fake._request(lambda: self._fake._pool_down(pool_names, all))


class FakeSky:
    """Injected with ``SkyBackend(..., sdk=fake)`` or ``chunkpilot.control.backends.sky_sdk.use_sdk(fake)``."""

    local_paths_reachable = True  # jobs run on this machine: they can read a local store
    ClusterNotUpError = sky.exceptions.ClusterNotUpError

    def __init__(self, workdir: Path, *, python: str = sys.executable, launch_latency: float = 0.05,
                 recovery_delay: float = 0.3, step_delay: float = 0.05, fault_timeout: float = 30.0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.launch_latency = launch_latency
        self.recovery_delay = recovery_delay
        self.step_delay = step_delay
        self.fault_timeout = fault_timeout
        self.jobs = FakeJobs(self)
        self.faults: dict[str, str] = {}
        self.calls: list[tuple[str, dict]] = []
        self.launches_in_flight = 0
        self.max_launches_in_flight = 0
        self.gpus_per_node: Optional[int] = None  # SKYPILOT_NUM_GPUS_PER_NODE; None: the launched count
        self.pools: dict[str, dict] = {}  # name -> {"task", "workers"}
        self._jobs: dict[int, FakeJob] = {}
        self._requests: dict[str, Callable[[], Any]] = {}
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._stopping = threading.Event()

    # -- sky.get -------------------------------------------------------------
    def get(self, request_id):
        with self._lock:
            action = self._requests.pop(request_id, None)
        if action is None:
            raise RuntimeError(f"Failed to get request {request_id}: 404 request not found")
        return action()

    def _request(self, action: Callable[[], Any]) -> str:
        with self._lock:
            request_id = f"fake-{next(self._request_ids):06d}"
            self._requests[request_id] = action
        return request_id

    # -- what tests look at ---------------------------------------------------
    def jobs_named(self, name: str) -> list[FakeJob]:
        with self._lock:
            return [j for j in self._jobs.values() if j.name == name]

    @property
    def all_jobs(self) -> list[FakeJob]:
        with self._lock:
            return list(self._jobs.values())

    def log_of(self, job: FakeJob) -> str:
        path = self.workdir / f"{job.name}-{job.job_id}.log"
        return path.read_text() if path.exists() else ""

    def shutdown(self) -> None:
        """Stop every job's process and thread (test teardown)."""
        self._stopping.set()
        for job in self.all_jobs:
            _kill(job.process)
        for job in self.all_jobs:
            if job.thread is not None:
                job.thread.join(timeout=10)

    # -- the controller ---------------------------------------------------------
    def _launch(self, task, name: Optional[str], pool: Optional[str] = None, num_jobs: Optional[int] = None) -> str:
        with self._lock:
            self.launches_in_flight += 1
            self.max_launches_in_flight = max(self.max_launches_in_flight, self.launches_in_flight)
        try:
            time.sleep(self.launch_latency)  # a round trip to the API server
            if isinstance(task, sky.Dag):
                task = task.tasks[0]
            job_name = name or task.name
            count = 1 if num_jobs is None else int(num_jobs)
            if self.faults.get(job_name) == REFUSE_LAUNCH:
                def refused():
                    raise sky.exceptions.NoCloudAccessError("No cloud access is enabled (fake). Run `sky check`")

                return self._request(refused)
            if pool is not None and pool not in self.pools:
                def no_pool():
                    raise click.UsageError(f"Pool {pool!r} not found.")

                return self._request(no_pool)
            envs = {str(k): str(v) for k, v in (task.envs or {}).items()}
            envs["SKYPILOT_NUM_JOBS"] = str(count)
            secrets = {str(k): v.get_secret_value() if hasattr(v, "get_secret_value") else str(v)
                       for k, v in (task.secrets or {}).items()}
            jobs = []
            with self._lock:
                for rank in range(count):
                    job = FakeJob(next(self._ids), job_name, task, envs, secrets, rank=rank, num_jobs=count, pool=pool)
                    self._jobs[job.job_id] = job
                    jobs.append(job)
                self.calls.append(("launch", {"name": job_name, "pool": pool, "num_jobs": num_jobs}))
            for job in jobs:
                job.thread = threading.Thread(target=self._supervise, args=(job,), name=f"fake-{job_name}", daemon=True)
                job.thread.start()
            if self.faults.get(job_name) == LOSE_LAUNCH_REPLY:
                def lost():
                    raise sky.exceptions.ApiServerConnectionError("http://127.0.0.1:9")

                return self._request(lost)
            return self._request(lambda: ([j.job_id for j in jobs], None))
        finally:
            with self._lock:
                self.launches_in_flight -= 1

    # -- pools -----------------------------------------------------------------
    def _pool_apply(self, task, pool_name: str, workers: Optional[int]) -> None:
        if isinstance(task, sky.Dag):
            task = task.tasks[0]
        with self._lock:
            if task is None:
                if pool_name not in self.pools:
                    raise click.UsageError(f"Pool {pool_name!r} not found.")
                self.pools[pool_name]["workers"] = workers
                return None
            if task.service is None or not task.service.pool:
                raise ValueError("Pool section not found.")
            count = workers if workers is not None else task.service.min_replicas
            self.pools[pool_name] = {"task": task, "workers": count}
        return None

    def _pool_status(self, pool_names) -> list[dict]:
        names = [pool_names] if isinstance(pool_names, str) else pool_names
        with self._lock:
            out = []
            for name, pool in self.pools.items():
                if names is not None and name not in names:
                    continue
                busy = sum(1 for j in self._jobs.values() if j.pool == name and not j.status.is_terminal())
                out.append({"name": name, "status": ServiceStatus.READY, "pool": True,
                            "target_num_replicas": pool["workers"], "requested_resources_str": str(pool["task"].resources),
                            "replica_info": [{"replica_id": i + 1, "name": f"{name}-{i + 1}", "status": ReplicaStatus.READY,
                                              "used_by": None} for i in range(pool["workers"] or 0)],
                            "busy_jobs": busy})
            return out

    def _pool_down(self, pool_names, all_pools: bool) -> None:
        names = list(self.pools) if all_pools else ([pool_names] if isinstance(pool_names, str) else list(pool_names or []))
        with self._lock:
            for name in names:
                if name not in self.pools:
                    raise ValueError(f"Pool {name!r} does not exist.")
                del self.pools[name]
        return None

    def _queue(self, skip_finished, job_ids, fields, statuses, name_match, limit):
        with self._lock:
            jobs = list(self._jobs.values())
        if not jobs:
            raise sky.exceptions.ClusterNotUpError("Managed jobs controller does not exist.")
        rows = [j for j in sorted(jobs, key=lambda j: -j.job_id)
                if (not skip_finished or not j.status.is_terminal())
                and (job_ids is None or j.job_id in job_ids)
                and (statuses is None or j.status.value in statuses)
                and (name_match is None or name_match in j.name)]
        if limit:
            rows = rows[:limit]
        counts: dict[str, int] = {}
        for j in rows:
            counts[j.status.value] = counts.get(j.status.value, 0) + 1
        return [j.record(fields) for j in rows], len(rows), counts, len(jobs)

    def _cancel(self, name, job_ids, cancel_all):
        with self._lock:
            targets = [j for j in self._jobs.values()
                       if cancel_all or (name is not None and j.name == name) or (job_ids and j.job_id in job_ids)]
            for job in targets:
                if job.status.is_terminal():
                    continue
                job.cancel_requested = True
                job.status = S.CANCELLING
                if job.process is not None and job.process.poll() is None:
                    try:
                        os.killpg(job.process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        return None

    def _set(self, job: FakeJob, status: ManagedJobStatus, reason: Optional[str] = None) -> None:
        with self._lock:
            if job.cancel_requested and not status.is_terminal() and status is not S.CANCELLING:
                return  # a cancel wins over progress
            if job.status is S.RECOVERING and status is S.RUNNING:
                job.last_recovered_at = time.time()
            job.status = status
            if reason is not None:
                job.failure_reason = reason
            if status is S.RUNNING and job.start_at is None:
                job.start_at = time.time()
            if status.is_terminal():
                job.end_at = time.time()

    def _sleep(self, seconds: float) -> bool:
        """Sleep; False if the fake is shutting down."""
        return not self._stopping.wait(seconds)

    def _supervise(self, job: FakeJob) -> None:
        fault = self.faults.get(job.name)
        recovery = _job_recovery(job.task)
        restarts_on_errors = 0
        if not self._sleep(self.step_delay) or self._cancelled(job):
            return
        self._set(job, S.STARTING)
        if not self._sleep(self.step_delay) or self._cancelled(job):
            return
        if fault == FAILED_SETUP or not self._wheel_shipped(self._setup_task(job)):
            reason = job.failure_reason or "Setup failed: bash exited 1 (fake). To see the details, run: sky jobs logs"
            self._set(job, S.FAILED_SETUP, reason)
            return
        self._set(job, S.RUNNING)
        if fault == SUCCEED_WITHOUT_MARKER:
            if self._sleep(self.step_delay):
                self._set(job, S.SUCCEEDED)
            return
        pending_fault = fault if fault in (PREEMPT, FAILED_CONTROLLER) else None
        while True:
            self._start_worker(job)
            if pending_fault and self._wait_for_part(job):
                _kill(job.process)
                job.process.wait()
                if pending_fault == FAILED_CONTROLLER:
                    self._set(job, S.FAILED_CONTROLLER, "Unexpected error in the jobs controller (fake): controller process died")
                    return
                pending_fault = None
                self._set(job, S.RECOVERING)  # preempted: a new machine, the run command from scratch
                if not self._sleep(self.recovery_delay) or self._cancelled(job):
                    return
                with self._lock:
                    job.recovery_count += 1
                self._set(job, S.RUNNING)
                continue
            code = job.process.wait()
            if self._stopping.is_set() or self._cancelled(job):
                return
            if code == 0:
                self._set(job, S.SUCCEEDED)
                return
            if code in recovery["recover_on_exit_codes"] or restarts_on_errors < recovery["max_restarts_on_errors"]:
                if code not in recovery["recover_on_exit_codes"]:
                    restarts_on_errors += 1
                self._set(job, S.RECOVERING, f"Job exited with exit code {code}. Restarting the job")
                if not self._sleep(self.recovery_delay):
                    return
                with self._lock:
                    job.recovery_count += 1
                self._set(job, S.RUNNING)
                continue
            self._set(job, S.FAILED, f"Job exited with exit code {code} (user program failure). "
                                     f"To see the details, run: sky jobs logs --controller {job.job_id}")
            return

    def _cancelled(self, job: FakeJob) -> bool:
        with self._lock:
            if job.cancel_requested:
                job.status = S.CANCELLED
                job.end_at = time.time()
                return True
        return False

    def _setup_task(self, job: FakeJob):
        """Whose setup and file mounts the job's machine ran: its pool's (a warm worker), else its own."""
        with self._lock:
            return (self.pools[job.pool]["task"] if job.pool in self.pools else job.task), job

    def _wheel_shipped(self, task_and_job) -> bool:
        """The launcher must ship its own build: a file mount whose source folder holds one chunkpilot wheel."""
        task, job = task_and_job
        mounts = task.file_mounts or {}
        for src in mounts.values():
            if Path(src).is_dir() and list(Path(src).glob("chunkpilot-*.whl")):
                return True
        job.failure_reason = f"Setup failed: no chunkpilot wheel in the file mounts {mounts} (fake)"
        return False

    def job_env(self, job: FakeJob) -> dict[str, str]:
        """The environment SkyPilot gives the job's run script."""
        _, count, _ = launched_resources(self._setup_task(job)[0])
        gpus = self.gpus_per_node if self.gpus_per_node is not None else count
        return {**job.envs, **job.secrets, "SKYPILOT_TASK_ID": f"sky-managed-{job.job_id}",
                "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus), "SKYPILOT_JOB_RANK": str(job.rank),
                "SKYPILOT_CLUSTER_INFO": json.dumps({"cluster_name": f"fake-{job.job_id}", "cloud": FAKE_CLOUD,
                                                     "region": FAKE_REGION, "zone": FAKE_ZONE})}

    def _venv(self) -> Path:
        """A stand-in for the machine's ~/chunkpilot-venv: ``activate`` puts this test's python first on PATH."""
        venv = self.workdir / "venv"
        if not (venv / "bin" / "activate").exists():
            (venv / "bin").mkdir(parents=True, exist_ok=True)
            python = Path(self.python)
            (venv / "bin" / "activate").write_text(f'export PATH="{python.parent}:$PATH"\n')
        return venv

    def _start_worker(self, job: FakeJob) -> None:
        run = job.task.run or ""
        if "-m worker" not in run:
            raise AssertionError(f"the task's run command does not start the worker: {run!r}")
        env = {**os.environ, **self.job_env(job), "PYTHONUNBUFFERED": "1", "CHUNKPILOT_VENV": str(self._venv())}
        log = open(self.workdir / f"{job.name}-{job.job_id}.log", "ab")
        with log:
            job.process = subprocess.Popen(["bash", "-c", run], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        with self._lock:
            job.worker_starts += 1

    def _wait_for_part(self, job: FakeJob) -> bool:
        """Wait until the worker has committed a part of a chunk it holds (noted as ``job.fault_chunk``);
        False if it exited first."""
        run_dir = Path(job.envs["CHUNKPILOT_RUN_URI"])
        me = job_identity(self.job_env(job))
        deadline = time.monotonic() + self.fault_timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            chunk = _held_committed_chunk(run_dir, me)
            if chunk is not None:
                job.fault_chunk = chunk
                return job.process.poll() is None
            if job.process.poll() is not None:
                return False
            time.sleep(0.01)
        return False


def _held_committed_chunk(run_dir: Path, me: tuple[str, int]) -> Optional[str]:
    """A chunk worker launch ``me`` holds with a part of the attempt it holds it as, or None."""
    for claim_file in (run_dir / "claims").glob("*.json"):
        try:
            claim = json.loads(claim_file.read_text())
        except (OSError, ValueError):
            continue
        if (slot_of(claim["worker"]), claim["worker_attempt"]) != me or claim["state"] != "held":
            continue
        out = run_dir / "out" / claim["chunk"]
        if out.is_dir() and any(p.name.startswith(f"a{claim['attempt']}-") and p.suffix == ".jsonl" for p in out.iterdir()):
            return claim["chunk"]
    return None


def _job_recovery(task) -> dict:
    recovery = {"recover_on_exit_codes": [], "max_restarts_on_errors": 0}
    for resources in task.resources:
        config = resources.job_recovery or {}
        codes = config.get("recover_on_exit_codes") or []
        recovery["recover_on_exit_codes"] = [codes] if isinstance(codes, int) else list(codes)
        recovery["max_restarts_on_errors"] = int(config.get("max_restarts_on_errors") or 0)
        break
    return recovery


def _kill(process: Optional[subprocess.Popen]) -> None:
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
