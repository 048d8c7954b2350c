"""Shared helpers for the benchmark scripts: machine facts, timing, peak RSS, tables, an S3 server.

Every script prints the machine it ran on, runs its contenders interleaved
(A, B, C, A, B, C, …) so a noisy neighbour hits them alike, and reports medians
and ratios of medians.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/ first, not the repo
    sys.path.insert(0, str(REPO))

PYTHON = sys.executable
MB = 1024 * 1024


# -- the machine ------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def print_machine(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    info = {**machine(), **(extra or {})}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    print("command: " + " ".join(shlex.quote(a) for a in [Path(PYTHON).name, *sys.argv]), flush=True)
    return info


# -- measuring ---------------------------------------------------------------------
def run_measured(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check: bool = True) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, peak RSS, CPU seconds (its descendants included), and how busy
    the rest of the machine was meanwhile (``foreign_cores``: other processes' CPU / wall).

    Peak RSS comes from GNU time when present: a child forked from this (maybe large)
    process would otherwise report this process's size as its own peak.
    """
    report = None
    if os.path.exists("/usr/bin/time"):
        fd, report = tempfile.mkstemp(prefix="bench-time-")
        os.close(fd)
        cmd = ["/usr/bin/time", "-q", "-f", "%M %U %S", "-o", report, *cmd]
    busy_before = _machine_busy_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    tree = _TreeCpu(proc.pid)
    captured: dict[str, bytes] = {}
    drains = [threading.Thread(target=lambda n=name, p=pipe: captured.__setitem__(n, p.read()))
              for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)) if pipe is not None]
    for t in drains:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)  # reaps it ourselves: its rusage is the child's own
    tree_cpu = tree.stop()
    for t in drains:
        t.join()
    err = captured.get("stderr", b"")
    wall = time.perf_counter() - started
    busy = _machine_busy_seconds() - busy_before
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_kb, user, system = usage.ru_maxrss, usage.ru_utime, usage.ru_stime
    if report:
        try:
            fields = Path(report).read_text().split()
            peak_kb, user, system = int(fields[-3]), float(fields[-2]), float(fields[-1])
        except (OSError, ValueError, IndexError):
            pass
        finally:
            os.unlink(report)
    cpu = user + system
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{err.decode(errors='replace')[-3000:]}")
    return {
        "wall_s": wall,
        "peak_rss_mb": peak_kb / 1024,  # Linux reports KiB
        "cpu_s": max(cpu, tree_cpu),  # descendants included, orphans too
        "user_s": user,  # the process and its waited-for children, in user space ...
        "sys_s": system,  # ... and in the kernel (a copy_file_range is all kernel time)
        "foreign_cores": max(0.0, busy - max(cpu, tree_cpu)) / wall if wall > 0 else 0.0,
        "returncode": proc.returncode,
        "stderr": err.decode(errors="replace"),
        "stdout": captured.get("stdout", b"").decode(errors="replace"),
    }


class _TreeCpu:
    """CPU seconds of a process and every descendant it ever had (orphans included), sampled from /proc.

    GNU time only counts children that were waited for; an engine's worker process
    re-parented to init would otherwise look like someone else's load.
    """

    def __init__(self, root: int, every: float = 0.5):
        self.root, self.every = root, every
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        hz = os.sysconf("SC_CLK_TCK")
        procs: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            rest = stat[stat.rfind(")") + 2 :].split()
            procs[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / hz)
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        stack, tree = [self.root, *self.seen], set()
        while stack:
            pid = stack.pop()
            if pid in procs and pid not in tree:
                tree.add(pid)
                stack.extend(children.get(pid, ()))
        for pid in tree:
            self.seen[pid] = max(self.seen.get(pid, 0.0), procs[pid][1])

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.seen.values())


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb_self() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min–max`` of the runs, to show the noise next to a median."""
    if not values:
        return "-"
    return f"{min(values):.3g}–{max(values):.3g}"


# -- output ------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-.") and text != "-"


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1, default=str) + "\n")
        print(f"json: {path}")


def scratch_dir(base: str | None, prefix: str) -> Path:
    """A fresh folder for big synthetic files: never inside the repository."""
    root = Path(base or tempfile.gettempdir()).resolve()
    if REPO in (root, *root.parents):
        raise SystemExit(f"--workdir {root} is inside the repository; use a folder outside it (default /tmp)")
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


# -- an S3 server that counts requests ------------------------------------------------
_AWS_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
             "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@contextlib.contextmanager
def s3_server(max_keys: int | None = None) -> Iterator[tuple[Any, str]]:
    """A moto S3 server behind a FaultProxy with no faults (a pure request counter).

    Yields ``(proxy, direct_endpoint)``; while inside, ``AWS_ENDPOINT_URL`` points
    at the proxy so every chunkpilot store call is counted in ``proxy.requests``.
    """
    from chunkpilot.store.s3 import reset_clients
    from tests.s3server import FaultProxy, MotoServer

    saved = dict(os.environ)
    home = tempfile.mkdtemp(prefix="bench-aws-")
    for name in _AWS_VARS:
        os.environ.pop(name, None)
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": f"{home}/config", "AWS_SHARED_CREDENTIALS_FILE": f"{home}/credentials",
        "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    server_env = {"MOTO_S3_DEFAULT_MAX_KEYS": str(max_keys)} if max_keys else {}
    try:
        with MotoServer(env=server_env) as server, FaultProxy(server.endpoint, rate=0.0) as proxy:
            os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
            reset_clients()
            yield proxy, server.endpoint
    finally:
        reset_clients()
        os.environ.clear()
        os.environ.update(saved)


def admin_client(endpoint: str):
    """A boto3 client straight to the server (uncounted), for setting up fixtures."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", endpoint_url=endpoint,
                                          config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))
