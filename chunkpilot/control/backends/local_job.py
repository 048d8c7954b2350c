"""The parent of one local worker process: records its pid and, when it ends, its exit code.

The launcher may die and restart while jobs run; this small process outlives it
(it runs in its own session) so the job's outcome is never lost:
``<name>.pid`` while it runs, ``<name>.exit`` once the worker has exited; ``<name>.wrapper``
holds this process's own pid, so a worker seen gone before its exit file is written is known
to be ending, not vanished.
SIGTERM is forwarded to the worker (a graceful stop).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    jobs_dir, name, *command = argv
    if command[:1] == ["--"]:
        command = command[1:]
    log_path = os.path.join(jobs_dir, f"{name}.log")
    cancelled = os.path.join(jobs_dir, f"{name}.cancelled")
    if os.path.exists(cancelled):  # cancelled before it could start
        _write_atomic(os.path.join(jobs_dir, f"{name}.exit"), f"{-signal.SIGTERM}\n")
        return 0
    _write_atomic(os.path.join(jobs_dir, f"{name}.wrapper"), f"{os.getpid()}\n")
    with open(log_path, "ab", buffering=0) as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _write_atomic(os.path.join(jobs_dir, f"{name}.pid"), f"{child.pid}\n")
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if os.path.exists(cancelled):  # cancelled while starting: the canceller found no pid to signal
            child.send_signal(signal.SIGTERM)
        code = child.wait()
    _write_atomic(os.path.join(jobs_dir, f"{name}.exit"), f"{code}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
