"""Chaos: workers SIGKILLed and SIGTERMed at random, the launcher killed and restarted, 5% of
store requests failing — and the collected output is the fault-free run's, record for record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.s3server import CUT, INTERNAL, LOST_WRITE, RESET, SLOWDOWN

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = [sys.executable, "-m", "launcher.cli"]
RUN = "chaos"


def make_input(n: int) -> bytes:
    rng = random.Random(42)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        if i % 97 == 0:
            lines.append(b"{broken json\n")
        elif i % 89 == 0:
            lines.append(b"\n")
        elif i % 2:
            lines.append(json.dumps({"custom_id": f"r{i}", "prompt": text, "max_tokens": rng.randint(2, 10)}).encode() + b"\n")
        else:
            lines.append(json.dumps({"custom_id": f"r{i}", "messages": [{"role": "user", "content": text}]}).encode() + b"\n")
    return b"".join(lines)


def normalized(path: Path) -> list[dict]:
    """Output rows without the wall-clock ``created`` field, the only part that may differ."""
    rows = []
    for line in path.read_bytes().splitlines():
        row = json.loads(line)
        if row["response"]:
            row["response"]["body"].pop("created")
        rows.append(row)
    return rows


def launcher(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*LAUNCHER, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def live_worker_pids(jobs_dir: Path, min_age: float = 0.0) -> list[int]:
    """Workers still running that started at least ``min_age`` seconds ago."""
    pids = []
    for pid_file in jobs_dir.glob("*.pid"):
        if pid_file.with_suffix(".exit").exists():
            continue
        try:
            if time.time() - pid_file.stat().st_mtime < min_age:
                continue
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
            pids.append(pid)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            pass
    return pids


def stop_everything(watch: subprocess.Popen, jobs_dir: Path) -> None:
    """A failed test leaves no launcher or worker running behind it."""
    watch.kill()
    for pid in live_worker_pids(jobs_dir):
        os.kill(pid, signal.SIGKILL)


COMMON = ["--chunks", "8", "--engine", "echo", "--engine-option", "delay=0.02", "--engine-option", "batch=2",
          "--commit-records", "20", "--commit-seconds", "1", "--max-attempts", "60", "--run-name", RUN]


@pytest.mark.chaos
def test_chaos_run_matches_fault_free_run(tmp_path, s3_bucket, s3_admin_client, fault_proxy, session_cache):
    data = make_input(2400)
    (tmp_path / "in.jsonl").write_bytes(data)
    s3_admin_client.put_object(Bucket=s3_bucket, Key="in/prompts.jsonl", Body=data)

    # The reference: same input, no faults, a local store.
    base = launcher("submit", str(tmp_path / "in.jsonl"), *COMMON, "--workers", "8", "--store", str(tmp_path / "base"), "--watch")
    assert base.wait(120) == 0, base.stdout.read().decode()
    collected = launcher("collect", RUN, "--store", str(tmp_path / "base"), "-o", str(tmp_path / "base.jsonl"))
    assert collected.wait(60) == 0

    # The chaos run: inputs and store on S3 behind a proxy failing ~5% of requests.
    fault_proxy.rate = 0.05
    fault_proxy.random_faults = (SLOWDOWN, INTERNAL, RESET, CUT, LOST_WRITE)
    store = f"s3://{s3_bucket}/runs"
    trace = tmp_path / "answered.trace"
    submit = launcher("submit", f"s3://{s3_bucket}/in/", *COMMON, "--workers", "4", "--store", store,
                      "--engine-option", f"trace={trace}")
    assert submit.wait(60) == 0, submit.stdout.read().decode()
    jobs_dir = session_cache / "runs" / RUN / "logs"

    rng = random.Random(7)
    kills = {"SIGKILL": 0, "SIGTERM": 0}
    watch = launcher("watch", RUN, "--store", store, "--interval", "0.3")
    try:
        started = time.monotonic()
        launcher_restarted = False
        while watch.poll() is None:
            assert time.monotonic() - started < 600, "chaos run did not finish in time"  # a hang guard: the test takes ~65 s alone
            time.sleep(rng.uniform(0.8, 1.6))
            if not launcher_restarted and time.monotonic() - started > 4:
                watch.send_signal(signal.SIGKILL)  # the launcher machine dies mid-run
                watch.wait()
                time.sleep(0.5)
                watch = launcher("watch", RUN, "--store", store, "--interval", "0.3")
                launcher_restarted = True
                continue
            # Each worker lives at least 2 s (~1 s to start, then work): a preemption rate, not a
            # killing spree that would keep the last chunk from ever getting past its start-up.
            pids = live_worker_pids(jobs_dir, min_age=2.0)
            # A bounded number of preemptions: each costs a warm worker its relaunch, so an endless
            # spree would outpace the run (12 kills over a run of ~1 minute is a brutal spot market).
            if pids and sum(kills.values()) < 12:
                sig = (signal.SIGKILL, signal.SIGTERM)[sum(kills.values()) % 2]
                try:
                    os.kill(rng.choice(pids), sig)
                    kills[sig.name] += 1
                except ProcessLookupError:
                    pass
    except BaseException as exc:
        stop_everything(watch, jobs_dir)
        tail = watch.stdout.read().decode()[-6000:]
        status = launcher("status", RUN, "--store", store)
        status.wait(60)
        raise AssertionError(f"{exc}\n--- watch said:\n{tail}\n--- status:\n{status.stdout.read().decode()}") from exc
    output = watch.stdout.read().decode()
    assert watch.returncode == 0, output
    assert launcher_restarted and kills["SIGKILL"] >= 3 and kills["SIGTERM"] >= 3, kills

    collected = launcher("collect", RUN, "--store", store, "-o", str(tmp_path / "chaos.jsonl"))
    assert collected.wait(120) == 0, collected.stdout.read().decode()
    injected = sum(fault_proxy.injected.values())
    requests = sum(fault_proxy.requests.values())
    assert injected / requests >= 0.04, (injected, requests)

    chaos_rows, base_rows = normalized(tmp_path / "chaos.jsonl"), normalized(tmp_path / "base.jsonl")
    assert len(base_rows) == 2400 - len(range(0, 2400, 89)) + sum(1 for i in range(0, 2400, 89) if i % 97 == 0)
    assert chaos_rows == base_rows, "every record exactly once, in input order, same answers"

    answered = trace.read_text().split()
    regenerated = len(answered) - len(set(answered))
    print(f"\nchaos: {kills} kills, {injected}/{requests} store requests faulted {dict(fault_proxy.injected)}, "
          f"{regenerated} records regenerated ({regenerated / max(1, kills['SIGKILL']):.1f} per SIGKILL)")
    # A SIGKILL loses at most one commit window (20 records + what one engine step finishes);
    # a SIGTERM loses nothing it finished. Zombie overlap after a launcher restart adds none here.
    assert regenerated <= kills["SIGKILL"] * 22
