"""Local backend: each job is a worker process on this machine, with its own log.

Job state lives in files next to the logs, so it survives a launcher restart:
``<name>.pid`` (the worker's pid), ``<name>.exit`` (its exit code),
``<name>.cancelled`` (we asked it to stop). The job id is the job name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from chunkpilot.control.backends.base import JobState, JobStatus, LaunchRequest
from chunkpilot.control.proc import process_alive

EXIT_PREEMPTED = 75
EXIT_CONFIG = 2
# What one in-process vLLM CPU worker holds (measured with the bundled model: ~2.7 GB RSS with its
# 1 GiB KV cache): how many fit decides the default ``--workers`` together with the cores.
VLLM_WORKER_BYTES = 3 << 30
# What a local job runs on: this machine, priced only by --price-per-hour.
LOCAL_RESOURCES = {"cloud": "local"}


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_local_workers(engine: str, chunks: int) -> int:
    """How many workers this machine runs at once by default: one per core, as many vLLM workers as
    memory holds, never more than there are chunks."""
    slots = machine_cores()
    if engine == "vllm":
        memory = available_memory()
        if memory is not None:
            slots = min(slots, max(1, memory // VLLM_WORKER_BYTES))
    return max(1, min(slots, chunks))


def default_jobs_dir(store_uri: str, run_id: str) -> Path:
    """Logs and job files: inside a local store's run folder, else under ~/.cache/chunkpilot."""
    if "://" not in store_uri or store_uri.startswith("file://"):
        root = store_uri[len("file://") :] if store_uri.startswith("file://") else store_uri
        return Path(root).expanduser().absolute() / run_id / "logs"
    cache = Path(os.environ.get("CHUNKPILOT_CACHE", "~/.cache/chunkpilot")).expanduser()
    return cache / "runs" / run_id / "logs"


class LocalBackend:
    name = "local"
    # A cancelled job that ignores SIGTERM this long (hung, or stopped) gets SIGKILL.
    kill_after_seconds = 30.0

    def __init__(self, jobs_dir: Path, python: str = sys.executable, workers: int = 1):
        self.jobs_dir = Path(jobs_dir)
        self.python = python
        # Concurrent engines each spinning up one thread per core fight over the cores (measured:
        # 4 vLLM chunks, 2 at a time on 2 cores, took 2.6x longer than with one thread each).
        self.threads_per_job = max(1, machine_cores() // workers) if workers else None
        self._children: list[subprocess.Popen] = []

    def launch(self, requests: list[LaunchRequest]) -> list[str | None]:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        ids: list[str | None] = []
        for req in requests:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            if self.threads_per_job and "OMP_NUM_THREADS" not in env:
                env["OMP_NUM_THREADS"] = str(self.threads_per_job)
            worker = [self.python, "-m", "worker", *req.worker_args()]
            child = subprocess.Popen(
                [self.python, "-m", "chunkpilot.control.backends.local_job", str(self.jobs_dir), req.name, "--", *worker],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outlives the launcher; cancel signals the whole group
            )
            self._children.append(child)
            ids.append(req.name)
        return ids

    def _file(self, name: str, suffix: str) -> Path:
        return self.jobs_dir / f"{name}.{suffix}"

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, waking as soon as a job of this run exits (a new ``.exit`` file,
        whoever launched it), so the next chunk starts in a freed slot at once."""
        deadline = time.monotonic() + seconds
        before = self._exit_count()
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.05, left))
            if self._exit_count() != before:
                return

    def _exit_count(self) -> int:
        try:
            with os.scandir(self.jobs_dir) as entries:
                return sum(entry.name.endswith(".exit") for entry in entries)
        except FileNotFoundError:
            return 0

    def poll(self, run_id: str, names: list[str]) -> dict[str, JobState]:
        self._children = [c for c in self._children if c.poll() is None]  # reap finished job parents
        return {name: self._state(name) for name in names}

    def _state(self, name: str) -> JobState:
        state = self._status(name)
        return replace(state, started_at=_mtime(self._file(name, "pid")), ended_at=_mtime(self._file(name, "exit")),
                       resources=LOCAL_RESOURCES)

    def _status(self, name: str) -> JobState:
        cancelled = self._file(name, "cancelled").exists()
        exit_file = self._file(name, "exit")
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
            except ValueError:
                code = -1
            if code == 0:
                return JobState(JobStatus.SUCCEEDED)
            if cancelled:
                return JobState(JobStatus.CANCELLED, f"cancelled (exit {code})")
            if code == EXIT_CONFIG:
                return JobState(JobStatus.FAILED_CONFIG, f"worker exited 2 (configuration error): see {self._file(name, 'log')}")
            if code == EXIT_PREEMPTED:
                return JobState(JobStatus.FAILED, "worker stopped (exit 75)")
            if code < 0:
                return JobState(JobStatus.FAILED, f"worker killed by signal {-code}")
            return JobState(JobStatus.FAILED, f"worker exited {code}: see {self._file(name, 'log')}")
        pid_file = self._file(name, "pid")
        if not pid_file.exists():
            return JobState(JobStatus.MISSING if not self._file(name, "log").exists() else JobStatus.PENDING)
        pid = int(pid_file.read_text().strip() or 0)
        if process_alive(pid):
            if cancelled:
                self._escalate(name, pid)
                return JobState(JobStatus.CANCELLING)
            return JobState(JobStatus.RUNNING)
        if process_alive(_read_pid(self._file(name, "wrapper"))):
            return JobState(JobStatus.RUNNING)  # the worker has exited; its parent is writing the exit file
        # Both the worker and its parent are gone without an exit file: killed together.
        return JobState(JobStatus.CANCELLED if cancelled else JobStatus.FAILED, "job process vanished")

    def cancel(self, run_id: str, names: list[str]) -> None:
        for name in names:
            pid_file = self._file(name, "pid")
            if self._file(name, "exit").exists():
                continue
            marker = self._file(name, "cancelled")
            if not marker.exists():  # a job whose worker has not started yet sees it and never starts it
                self.jobs_dir.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"{time.time()}\n")
            if not pid_file.exists():
                continue
            pid = int(pid_file.read_text().strip() or 0)
            _signal(pid, signal.SIGTERM)
            _signal(pid, signal.SIGCONT)  # a stopped process must wake up to see SIGTERM

    def _escalate(self, name: str, pid: int) -> None:
        try:
            since = float(self._file(name, "cancelled").read_text().strip() or 0)
        except (OSError, ValueError):
            since = 0.0
        if time.time() - since > self.kill_after_seconds:
            _signal(pid, signal.SIGKILL)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _mtime(path: Path) -> float | None:
    """When the job wrapper wrote ``path`` (its pid file when the worker started, its exit file when it ended)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _signal(pid: int, signum: int) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
