"""Test helpers for runs on the local backend: which worker holds which chunk, and its process."""

from __future__ import annotations

import json
from pathlib import Path


def holders(run_dir: Path) -> dict[str, dict]:
    """chunk -> its claim (as JSON), for every chunk a worker holds now."""
    out = {}
    for claim_file in (run_dir / "claims").glob("*.json"):
        try:
            claim = json.loads(claim_file.read_text())
        except (OSError, ValueError):
            continue
        if claim["state"] == "held":
            out[claim["chunk"]] = claim
    return out


def worker_pid(run_dir: Path, claim: dict) -> int | None:
    """The pid of the worker process holding ``claim`` (the local backend's pid file), if it runs."""
    pid_file = run_dir / "logs" / f"{run_dir.name}-{claim['worker']}-a{claim['worker_attempt']}.pid"
    try:
        return int(pid_file.read_text())
    except (OSError, ValueError):
        return None


def parts_of(run_dir: Path, chunk: str, attempt: int) -> list[Path]:
    out = run_dir / "out" / chunk
    return sorted(out.glob(f"a{attempt}-*.jsonl")) if out.is_dir() else []
