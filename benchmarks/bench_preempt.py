"""Benchmark 2 — work lost to preemption: SIGKILL the worker at random moments, many times.

For each chunk size, fresh 1-chunk runs are worked through by the real worker
(benchmarks/_traced_worker.py: ``python -m worker`` plus a timestamped trace of every
answered record), killed with SIGKILL at a random moment of what would be one full
pass of the chunk (uniform over 5–95%, counted from the life's first answer), and
restarted as the next attempt until the chunk is done. From the trace, per kill:

* records regenerated: answered in that life, answered again by a later one;
* seconds regenerated: from the oldest answer that had to be redone to the kill (answers
  can finish out of input order, behind an older unfinished one), or from the last answer
  if none had to be redone;
* the seed's ``.succeed`` approach at the same kill moments: it saves nothing before
  the chunk ends, so it loses every answer of that life and all its generation time
  (and it never finishes once kills come faster than one whole chunk).

Commit window: a part every ``commit_seconds`` (5) or ``commit_records`` (256), the
defaults. The echo engine (a per-step delay, ``--rate`` records/s) sweeps chunk
sizes; ``--vllm-kills`` kills with the real vLLM CPU engine (SmolLM2) follow, at random
moments of one pass as timed by a first, unkilled calibration run on this machine (and by
any later run that finishes before its kill moment).

    python benchmarks/bench_preempt.py --sizes 1000 10000 50000 --kills 12 --vllm-kills 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from _util import PYTHON, REPO, median, print_machine, scratch_dir, table, write_json

COMMIT_SECONDS, COMMIT_RECORDS = 5.0, 256
TRACED = str(REPO / "benchmarks" / "_traced_worker.py")


def make_input(path: Path, n: int, chat: bool, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            if chat:
                f.write(json.dumps({"custom_id": f"r{i}", "messages": [{"role": "user", "content": f"Say something about the number {i}."}],
                                    "max_tokens": rng.randint(8, 64)}) + "\n")
            else:
                f.write(json.dumps({"custom_id": f"r{i}", "prompt": f"record {i} " + "word " * rng.randint(3, 30)}) + "\n")


def new_run(work: Path, name: str, n: int, engine: str, engine_options: dict, seed: int):
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.submit import SubmitOptions, plan_run, write_run

    source = work / f"{name}.jsonl"
    make_input(source, n, chat=engine == "vllm", seed=seed)
    store = work / f"store-{name}"
    options = SubmitOptions(inputs=(str(source),), chunks=1, store_uri=str(store), engine=engine, run_name=name,
                            max_tokens=64, temperature=0.0, commit_seconds=COMMIT_SECONDS, commit_records=COMMIT_RECORDS,
                            engine_options=engine_options)
    plan = plan_run(options)
    write_run(plan, str(store))
    return open_run(str(store), plan.spec.run_id)


def read_trace(path: Path, since: int = 0) -> tuple[list[tuple[float, str]], int]:
    if not path.exists():
        return [], since
    with open(path, "rb") as f:
        f.seek(since)
        data = f.read()
    cut = data.rfind(b"\n") + 1
    rows = []
    for line in data[:cut].splitlines():
        t, rid = line.split(b" ", 1)
        rows.append((float(t), rid.decode()))
    return rows, since + cut


def work_through(run, trace: Path, pass_seconds: float, rng: random.Random, env: dict, log: Path, max_lives: int = 60) -> list[dict]:
    """Run the chunk to done, killing each life at a random moment; returns the lives."""
    lives, attempt, offset = [], 1, 0
    while attempt <= max_lives:
        started = time.time()
        with open(log, "ab") as out:
            proc = subprocess.Popen([PYTHON, TRACED, "--run", run.run_uri, "--worker", "w0", "--attempt", str(attempt)],
                                    env=env, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT)
        kill_at, killed_at = None, None
        while proc.poll() is None:
            if kill_at is None:  # wait for this life's first answer, then pick the kill moment
                if trace.exists() and trace.stat().st_size > offset:
                    with open(trace, "rb") as f:
                        f.seek(offset)
                        first_line = f.readline()
                    if first_line.endswith(b"\n"):
                        kill_at = float(first_line.split(b" ", 1)[0]) + rng.uniform(0.05, 0.95) * pass_seconds
                time.sleep(0.005)
                continue
            if time.time() >= kill_at:
                proc.send_signal(signal.SIGKILL)
                killed_at = time.time()
                proc.wait()
                break
            try:
                proc.wait(timeout=max(0.0, min(0.05, kill_at - time.time())))
            except subprocess.TimeoutExpired:
                pass
        rows, new_offset = read_trace(trace, offset)
        offset = new_offset
        try:
            run.run_store.head("out/0000/_SUCCESS")
            done = True
        except Exception:  # noqa: BLE001 - NotFoundError: not done yet
            done = False
        # A kill after the chunk was marked done (the engine shutting down) is no preemption of the chunk.
        lives.append({"attempt": attempt, "started": started, "killed_at": None if done else killed_at,
                      "returncode": proc.returncode, "answers": rows})
        if done:
            return lives
        if proc.returncode not in (0, -signal.SIGKILL, 75):
            raise RuntimeError(f"worker exited {proc.returncode}; see {log}")
        attempt += 1
    raise RuntimeError(f"chunk not done after {max_lives} lives")


def check_output(run, n: int) -> None:
    """The merged output holds every record once, in input order, whatever the kills did."""
    from chunkpilot.control.collect import collect

    out = Path(run.run_store.uri).parent / "merged.jsonl"
    report = collect(run, str(out))
    ids = [json.loads(line)["custom_id"] for line in out.read_bytes().splitlines()]
    out.unlink()
    assert report.records == n and not report.mismatched_chunks and ids == [f"r{i}" for i in range(n)], report


def losses(lives: list[dict]) -> list[dict]:
    """Per kill: what chunkpilot regenerates, and what a per-chunk .succeed marker would lose."""
    out = []
    for k, life in enumerate(lives):
        if life["killed_at"] is None or not life["answers"]:
            continue
        later = {rid for l in lives[k + 1 :] for _, rid in l["answers"]}
        redone = [t for t, rid in life["answers"] if rid in later]
        first, last = life["answers"][0][0], life["answers"][-1][0]
        # Engine time whose answers were thrown away: since the oldest answer that had to be redone
        # (answers can finish out of input order, behind an older unfinished one), or, if none, since
        # the last answer (only in-flight work was lost).
        lost_since = min(redone) if redone else last
        out.append({
            "records": len(redone), "seconds": life["killed_at"] - lost_since,
            "seed_records": len(life["answers"]), "seed_seconds": life["killed_at"] - first,
        })
    return out


def rate_of(lives: list[dict]) -> float:
    """Answers per second while answering (the median over lives with enough answers)."""
    rates = []
    for life in lives:
        ts = [t for t, _ in life["answers"]]
        if len(ts) > 20 and ts[-1] > ts[0]:
            rates.append((len(ts) - 1) / (ts[-1] - ts[0]))
    return median(rates)


def calibrate(work: Path, n: int, rng: random.Random, env: dict) -> float:
    """Seconds from first to last answer of one vLLM pass over a fresh chunk, never killed:
    what "a random moment of one full pass" means on this machine."""
    run = new_run(work, f"vllm-{n}-calibration", n, "vllm", {}, seed=10_000)
    trace = work / f"vllm-{n}-calibration.trace"
    lives = work_through(run, trace, float("inf"), rng, {**env, "BENCH_TRACE": str(trace)}, work / "calibration.log")
    times = [t for life in lives for t, _ in life["answers"]]
    return max(times) - min(times)


def sweep(work: Path, label: str, n: int, engine: str, options: dict, kills_wanted: int, pass_seconds: float,
          rng: random.Random, env: dict, max_runs: int) -> dict:
    kills, all_lives, runs, parts = [], [], 0, []
    while len(kills) < kills_wanted and runs < max_runs:
        run = new_run(work, f"{label}-{runs}", n, engine, options, seed=runs)
        trace = work / f"{label}-{runs}.trace"
        lives = work_through(run, trace, pass_seconds, rng, {**env, "BENCH_TRACE": str(trace)}, work / f"{label}.log")
        answered = {rid for life in lives for _, rid in life["answers"]}
        assert len(answered) == n, f"{len(answered)} distinct answers for {n} records"
        check_output(run, n)
        kills.extend(losses(lives))
        all_lives.extend(lives)
        if len(lives) == 1 and lives[0]["answers"]:  # done before its kill moment: a pass is shorter than thought
            pass_seconds = lives[0]["answers"][-1][0] - lives[0]["answers"][0][0]
        parts.append(sum(1 for o in run.run_store.list("out/0000/") if o.key.endswith(".jsonl")))
        runs += 1
        print(f"  {label}: run {runs}: {len(lives)} lives, {sum(1 for l in lives if l['killed_at'])} kills so far this run; "
              f"{len(kills)} kills in total", flush=True)
    rate = rate_of(all_lives)
    window_s = min(COMMIT_SECONDS, COMMIT_RECORDS / rate) if rate else COMMIT_SECONDS
    return {"label": label, "engine": engine, "records": n, "runs": runs, "kills": len(kills), "rate": rate,
            "window_s": window_s, "window_records": min(COMMIT_RECORDS, rate * COMMIT_SECONDS),
            "per_kill": kills, "lives": len(all_lives), "parts_per_chunk": median(parts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 50000], help="records per chunk (echo engine)")
    ap.add_argument("--kills", type=int, default=12, help="kills per chunk size (echo)")
    ap.add_argument("--rate", type=float, default=500.0, help="echo engine speed, records/s (delay per step = 32 / rate)")
    ap.add_argument("--vllm-records", type=int, default=1024)
    ap.add_argument("--vllm-kills", type=int, default=4, help="kills with the real vLLM engine (0: skip)")
    ap.add_argument("--max-runs", type=int, default=12, help="fresh runs per size at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = print_machine()
    rng = random.Random(args.seed)
    work = scratch_dir(args.workdir, "bench-preempt-")
    env = {**os.environ, "CHUNKPILOT_LOG_LEVEL": "WARNING"}
    results = []
    try:
        batch = 32
        echo = {"delay": batch / args.rate, "batch": batch}
        for n in args.sizes:
            results.append(sweep(work, f"echo-{n}", n, "echo", echo, args.kills, n / args.rate, rng, env, args.max_runs))
        if args.vllm_kills:
            venv = {**env, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
            pass_seconds = calibrate(work, args.vllm_records, rng, venv)
            print(f"  vllm-{args.vllm_records}: one pass without kills takes {pass_seconds:.1f} s", flush=True)
            results.append(sweep(work, f"vllm-{args.vllm_records}", args.vllm_records, "vllm", {}, args.vllm_kills,
                                 pass_seconds, rng, venv, args.max_runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for r in results:
        k = r["per_kill"]
        rec, sec = [x["records"] for x in k], [x["seconds"] for x in k]
        srec, ssec = [x["seed_records"] for x in k], [x["seed_seconds"] for x in k]
        r["summary"] = {"records_median": median(rec), "records_max": max(rec), "seconds_median": median(sec), "seconds_max": max(sec),
                        "seed_records_median": median(srec), "seed_seconds_median": median(ssec),
                        "within_window": sum(1 for x in k if x["seconds"] <= r["window_s"] + 0.5) / len(k)}
        s = r["summary"]
        rows.append([r["engine"], r["records"], r["kills"], int(r["parts_per_chunk"]), f"{r['rate']:.0f}", f"{r['window_s']:.2f} s / {r['window_records']:.0f} rec",
                     f"{s['records_median']:.0f} / {s['records_max']}", f"{s['seconds_median']:.2f} / {s['seconds_max']:.2f}",
                     f"{s['seed_records_median']:.0f}", f"{s['seed_seconds_median']:.1f}",
                     f"{s['seed_seconds_median'] / max(s['seconds_median'], 1e-3):.0f}×"])
    print()
    print(table(["engine", "chunk records", "kills", "parts per chunk", "records/s", "commit window", "regenerated records per kill (median / max)",
                 "regenerated seconds per kill (median / max)", ".succeed: records lost per kill (median)",
                 ".succeed: seconds lost per kill (median)", ".succeed loses"], rows))
    print("window = min(commit_seconds 5, commit_records 256 / rate); a kill loses what was answered since the last commit")
    write_json(args.json, {"benchmark": "preempt", "machine": info, "args": vars(args),
                           "results": [{k: v for k, v in r.items()} for r in results]})


if __name__ == "__main__":
    sys.exit(main())
