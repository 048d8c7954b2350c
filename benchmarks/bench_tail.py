"""Benchmark — the tail: one slow worker among fast ones, with dynamic work rebalancing (splits).

``launcher submit --chunks 3 --workers 3 --engine echo --watch`` where worker w2's engine runs at a
fifth of the others' speed (echo's ``slow_worker=w2``, ``slow_factor=5``), against the same run
with no slow worker. Without splits the slow worker's chunk is the run's tail (4.76× the even
run's wall time before splits); with them, idle workers take the rest of its chunk. Wall time of
the whole command (start-up and the watcher's polling included), contenders interleaved — the same
slow run with splits off (``CHUNKPILOT_SPLITS=0``) too, unless ``--skip-no-splits``; the table has
medians and the ratio of medians, and the splits the workers gave (``launcher status --json``).

    python benchmarks/bench_tail.py --records 1500 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from _util import PYTHON, median, print_machine, run_measured, scratch_dir, spread, table, write_json

LAUNCHER = [PYTHON, "-m", "launcher.cli"]


def env(splits: bool = True) -> dict[str, str]:
    import os

    return {**os.environ, "CHUNKPILOT_POLL_SECONDS": "0.5", "CHUNKPILOT_SPLITS": "1" if splits else "0"}


def write_input(path: Path, records: int) -> Path:
    with open(path, "w") as f:
        for i in range(records):
            f.write(json.dumps({"custom_id": f"r{i}", "prompt": f"record {i} of the tail benchmark says hello"}) + "\n")
    return path


def run_once(work: Path, name: str, inputs: Path, args, slow: bool, splits: bool = True) -> dict:
    store = work / f"store-{name}"
    shutil.rmtree(store, ignore_errors=True)
    options = ["--engine", "echo", "--chunks", str(args.chunks), "--workers", str(args.workers),
               "--commit-seconds", str(args.commit_seconds), "--commit-records", str(args.commit_records),
               "--engine-option", f"delay={args.delay}", "--engine-option", f"batch={args.batch}",
               "--engine-option", f"max_in_flight={args.in_flight}"]
    if slow:
        options += ["--engine-option", "slow_worker=w2", "--engine-option", f"slow_factor={args.slow_factor}"]
    m = run_measured([*LAUNCHER, "submit", str(inputs), *options, "--store", str(store), "--run-name", "tail",
                      "--watch"], env=env(splits), cwd=str(work))
    status = json.loads(subprocess.run([*LAUNCHER, "status", "tail", "--store", str(store), "--json"], cwd=str(work),
                                       capture_output=True, text=True, check=True, env=env()).stdout)
    t = status["totals"]
    return {"wall_s": m["wall_s"], "records": t["records_done"], "chunks": t["chunks"],
            "splits": sum(w.get("splits_given", 0) for w in status.get("workers", [])),
            "foreign_cores": m["foreign_cores"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1500)
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--delay", type=float, default=0.02, help="echo seconds per step")
    ap.add_argument("--batch", type=int, default=8, help="echo answers per step")
    ap.add_argument("--in-flight", type=int, default=16)
    ap.add_argument("--slow-factor", type=float, default=5.0)
    ap.add_argument("--commit-seconds", type=float, default=0.5)
    ap.add_argument("--commit-records", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-no-splits", action="store_true", help="leave out the run with splits off (CHUNKPILOT_SPLITS=0)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    machine = print_machine()
    work = scratch_dir(args.workdir, "bench-tail-")
    inputs = write_input(work / "in.jsonl", args.records)
    contenders = [("even", False, True), ("one slow worker", True, True)]
    if not args.skip_no_splits:
        contenders.append(("one slow worker, no splits", True, False))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in contenders}
    for i in range(args.repeats):
        for name, slow, splits in contenders:
            r = run_once(work, f"{name.replace(' ', '-').replace(',', '')}-{i}", inputs, args, slow, splits)
            print(f"  {name} #{i}: {r['wall_s']:.1f} s, {r['records']} records, {r['chunks']} chunks, "
                  f"{r['splits']} split(s), other load {r['foreign_cores']:.2f} cores", flush=True)
            results[name].append(r)
    base = median([r["wall_s"] for r in results["even"]])
    rows = []
    for name, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        rows.append([name, f"{median(walls):.1f} ({spread(walls)})", f"{median(walls) / base:.2f}×",
                     median([r["splits"] for r in runs]), median([r["chunks"] for r in runs]), runs[0]["records"]])
    print("\n" + table(["contender", "wall s (min–max)", "vs even", "splits", "chunks at the end", "records"], rows))
    write_json(args.json, {"machine": machine, "args": vars(args), "results": results})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
