"""Local backend: each job is a worker subprocess on this machine, with its own log.

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
from pathlib import Path

from launcher.backends.base import JobState, JobStatus, LaunchRequest

EXIT_PREEMPTED = 75
EXIT_CONFIG = 2


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

    def __init__(self, jobs_dir: Path, python: str = sys.executable, parallel: int = 1):
        self.jobs_dir = Path(jobs_dir)
        self.python = python
        # Concurrent engines each spinning up one thread per core fight over the cores (measured:
        # 4 vLLM chunks, 2 at a time on 2 cores, took 2.6x longer than with one thread each).
        self.threads_per_job = max(1, (os.cpu_count() or 1) // parallel) if parallel else None
        self._children: list[subprocess.Popen] = []

    def launch(self, requests: list[LaunchRequest]) -> list[str | None]:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        ids: list[str | None] = []
        for req in requests:
            env = dict(os.environ, CHUNKPILOT_ATTEMPT=str(req.attempt), PYTHONUNBUFFERED="1")
            if self.threads_per_job and "OMP_NUM_THREADS" not in env:
                env["OMP_NUM_THREADS"] = str(self.threads_per_job)
            worker = [self.python, "-m", "worker", "--chunk", req.chunk_uri, "--attempt", str(req.attempt)]
            child = subprocess.Popen(
                [self.python, "-m", "launcher.backends.local_job", str(self.jobs_dir), req.name, "--", *worker],
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

    def poll(self, run_id: str, names: list[str]) -> dict[str, JobState]:
        self._children = [c for c in self._children if c.poll() is None]  # reap finished job parents
        return {name: self._state(name) for name in names}

    def _state(self, name: str) -> JobState:
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
                return JobState(JobStatus.FAILED_CONFIG, "worker exited 2 (configuration error): see its log")
            if code == EXIT_PREEMPTED:
                return JobState(JobStatus.FAILED, "worker stopped (exit 75)")
            if code < 0:
                return JobState(JobStatus.FAILED, f"worker killed by signal {-code}")
            return JobState(JobStatus.FAILED, f"worker exited {code}")
        pid_file = self._file(name, "pid")
        if not pid_file.exists():
            return JobState(JobStatus.MISSING if not self._file(name, "log").exists() else JobStatus.PENDING)
        pid = int(pid_file.read_text().strip() or 0)
        if _alive(pid):
            if cancelled:
                self._escalate(name, pid)
                return JobState(JobStatus.CANCELLING)
            return JobState(JobStatus.RUNNING)
        # Both the worker and its parent are gone without an exit file: killed together.
        return JobState(JobStatus.CANCELLED if cancelled else JobStatus.FAILED, "job process vanished")

    def cancel(self, run_id: str, names: list[str]) -> None:
        for name in names:
            pid_file = self._file(name, "pid")
            if self._file(name, "exit").exists() or not pid_file.exists():
                continue
            marker = self._file(name, "cancelled")
            if not marker.exists():
                marker.write_text(f"{time.time()}\n")
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


def _signal(pid: int, signum: int) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
