"""The local backend's view of a job from its files: a worker that has exited while its parent is
still writing the exit file is ending, not vanished."""

from __future__ import annotations

import os
import subprocess
import sys

from chunkpilot.control.backends.base import JobStatus
from chunkpilot.control.backends.local import LocalBackend


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_worker_gone_before_its_exit_file_is_running_while_its_parent_lives(tmp_path):
    backend = LocalBackend(tmp_path)
    (tmp_path / "r-w0-a1.log").write_text("")
    (tmp_path / "r-w0-a1.pid").write_text(f"{dead_pid()}\n")
    (tmp_path / "r-w0-a1.wrapper").write_text(f"{os.getpid()}\n")  # the parent, alive
    assert backend.poll("r", ["r-w0-a1"])["r-w0-a1"].status is JobStatus.RUNNING
    (tmp_path / "r-w0-a1.exit").write_text("0\n")
    assert backend.poll("r", ["r-w0-a1"])["r-w0-a1"].status is JobStatus.SUCCEEDED


def test_a_worker_and_its_parent_gone_without_an_exit_file_vanished(tmp_path):
    backend = LocalBackend(tmp_path)
    (tmp_path / "r-w0-a1.log").write_text("")
    (tmp_path / "r-w0-a1.pid").write_text(f"{dead_pid()}\n")
    (tmp_path / "r-w0-a1.wrapper").write_text(f"{dead_pid()}\n")
    state = backend.poll("r", ["r-w0-a1"])["r-w0-a1"]
    assert state.status is JobStatus.FAILED and "vanished" in state.detail
