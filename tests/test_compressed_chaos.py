"""Compressed inputs under chaos: one big .jsonl.gz staged into 8 chunks, and a folder of .jsonl.zst
shards, each run with workers SIGKILLed and SIGTERMed at random — collect holds every record
exactly once, in input order, with the answers a plain-JSONL run of the same records gives."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import zstandard

from tests.test_chaos import launcher, live_worker_pids, normalized, stop_everything

RUN = "packed"
ECHO = ["--engine", "echo", "--engine-option", "delay=0.02", "--engine-option", "batch=8",
        "--commit-records", "50", "--commit-seconds", "1", "--max-attempts", "60"]


def make_records(n: int) -> bytes:
    rng = random.Random(11)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    lines = []
    for i in range(n):
        if i % 997 == 3:
            lines.append(b"{broken json\n")
        else:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 9)))
            lines.append(json.dumps({"custom_id": f"r{i}", "prompt": text, "max_tokens": 4}).encode() + b"\n")
    return b"".join(lines)


def run_with_kills(inputs: list[str], store: Path, chunks: int) -> dict[str, int]:
    submit = launcher("submit", *inputs, "--chunks", str(chunks), *ECHO, "--workers", "4", "--store", str(store),
                      "--run-name", RUN)
    out = submit.communicate(timeout=120)[0].decode()
    assert submit.returncode == 0, out
    jobs_dir = store / RUN / "logs"
    rng = random.Random(5)
    kills = {"SIGKILL": 0, "SIGTERM": 0}
    watch = launcher("watch", RUN, "--store", str(store), "--interval", "0.3")
    try:
        started = time.monotonic()
        while watch.poll() is None:
            assert time.monotonic() - started < 480, "run did not finish in time"
            time.sleep(rng.uniform(0.6, 1.2))
            pids = live_worker_pids(jobs_dir, min_age=1.5)
            if pids and sum(kills.values()) < 10:  # a bounded preemption rate: each kill costs a worker relaunch
                sig = (signal.SIGKILL, signal.SIGTERM)[sum(kills.values()) % 2]
                try:
                    os.kill(rng.choice(pids), sig)
                    kills[sig.name] += 1
                except ProcessLookupError:
                    pass
    except BaseException:
        stop_everything(watch, jobs_dir)
        raise
    assert watch.returncode == 0, watch.stdout.read().decode()[-4000:]
    return kills


def reference(tmp_path: Path, data: bytes) -> list[dict]:
    """The same records as one plain JSONL file, run without faults."""
    (tmp_path / "plain.jsonl").write_bytes(data)
    base = launcher("submit", str(tmp_path / "plain.jsonl"), "--chunks", "3", *ECHO, "--workers", "3",
                    "--store", str(tmp_path / "base"), "--run-name", RUN, "--watch")
    assert base.wait(180) == 0, base.stdout.read().decode()
    out = launcher("collect", RUN, "--store", str(tmp_path / "base"), "-o", str(tmp_path / "base.jsonl"))
    assert out.wait(60) == 0
    return normalized(tmp_path / "base.jsonl")


@pytest.mark.chaos
def test_one_big_gzip_file_in_8_chunks_with_workers_killed(tmp_path):
    data = make_records(20_000)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "records.jsonl.gz").write_bytes(gzip.compress(data))
    kills = run_with_kills([str(tmp_path / "in" / "records.jsonl.gz")], tmp_path / "store", 8)
    assert kills["SIGKILL"] >= 2 and kills["SIGTERM"] >= 2, kills
    spec = json.loads((tmp_path / "store" / RUN / "run.json").read_text())
    assert len(spec["chunks"]) == 8 and len(spec["inputs"][0]["staged"]) == 8
    collected = launcher("collect", RUN, "--store", str(tmp_path / "store"), "-o", str(tmp_path / "out.jsonl"))
    assert collected.wait(60) == 0, collected.stdout.read().decode()
    rows = normalized(tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in rows] == [r["custom_id"] for r in reference(tmp_path, data)]
    assert len(rows) == 20_000 and len({r["id"] for r in rows}) == 20_000
    print(f"\ngzip chaos: {kills}")


@pytest.mark.chaos
def test_a_folder_of_zstd_shards_with_workers_killed(tmp_path):
    data = make_records(12_000)
    lines = data.splitlines(keepends=True)
    folder = tmp_path / "shards"
    folder.mkdir()
    rng = random.Random(2)
    cuts = [k * 750 + rng.randint(-300, 300) for k in range(1, 16)]  # 16 shards of uneven size, none > 2 chunks' share
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(lines)])):
        (folder / f"part-{i:03d}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines[a:b])))
    kills = run_with_kills([str(folder)], tmp_path / "store", 6)
    assert kills["SIGKILL"] >= 2 and kills["SIGTERM"] >= 2, kills
    manifests = [json.loads(p.read_text()) for p in sorted((tmp_path / "store" / RUN / "chunks").glob("*.json"))]
    spec = json.loads((tmp_path / "store" / RUN / "run.json").read_text())
    for m in manifests:  # whole shards only
        assert all(r["start"] == 0 and r["end"] == spec["inputs"][r["source"]]["units"] for r in m["ranges"])
    collected = launcher("collect", RUN, "--store", str(tmp_path / "store"), "-o", str(tmp_path / "out.jsonl"))
    assert collected.wait(60) == 0, collected.stdout.read().decode()
    rows = normalized(tmp_path / "out.jsonl")
    base = reference(tmp_path, data)
    # A broken line's custom_id is its position, which names the shard here and the one file there.
    strip = lambda rs: [(None if r["error"] else r["custom_id"], r["error"], r["response"] and r["response"]["body"]["choices"])  # noqa: E731
                        for r in rs]
    assert strip(rows) == strip(base), "every record once, in input order, same answers"
    print(f"\nzstd shards chaos: {kills}")
