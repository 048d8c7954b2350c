"""Benchmark 11 — warm workers on the vLLM CPU engine: the README quick start against ``vllm run-batch``,
and many small chunks against a few large ones.

**quickstart**: ``launcher submit examples/prompts.jsonl --chunks 4 --watch`` exactly as the README
runs it (defaults: vLLM on CPU, SmolLM2-135M, as many workers as this machine holds) against one
``vllm run-batch`` process over the same 80 requests. run-batch serves neither ``/v1/completions``
nor bare ``prompt``/``messages`` records, so its file holds each record as the chat request it is
closest to: a completion prompt becomes one user message (the same text the model reads, framed by
the chat template: a slightly different prompt, answers not compared), ``max_tokens`` as the record
says or the run's default of 256. Engine settings as the worker's on CPU: float32, max_model_len
2048, eager, 1 GiB KV cache. Wall time of the whole command, start-up included: what a user waits.

**chunks**: ``--chunks 16 --workers 2`` against ``--chunks 2`` (two workers, default) over the same
prompts (benchmarks/bench_throughput.py's chat requests): with warm workers, 8 chunks per worker
should cost about what 1 does — two engine starts either way.

Contenders run interleaved (A, B, A, B, ...); the table has medians and ratios of medians.

    python benchmarks/bench_workers.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from _util import PYTHON, REPO, median, print_machine, run_measured, scratch_dir, spread, table, write_json

LAUNCHER = [PYTHON, "-m", "launcher.cli"]
EXAMPLES = REPO / "examples" / "prompts.jsonl"
DEFAULT_MAX_TOKENS = 256  # submit's default, which records without max_tokens get


def as_chat_requests(src: Path, dst: Path) -> int:
    """Each record of ``src`` as the OpenAI Batch chat request run-batch can serve; returns how many."""
    n = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            body = dict(record.get("body") or {})
            if "body" not in record:
                body = {k: v for k, v in record.items() if k not in ("custom_id", "prompt", "messages")}
                body["messages"] = record.get("messages") or [{"role": "user", "content": record["prompt"]}]
            elif "prompt" in body:
                body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
            body.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
            body.setdefault("temperature", 0.0)
            body["model"] = "smollm2"
            out.write(json.dumps({"custom_id": record["custom_id"], "method": "POST", "url": "/v1/chat/completions",
                                  "body": body}) + "\n")
            n += 1
    return n


def engine_env() -> dict[str, str]:
    import os

    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CHUNKPILOT_POLL_SECONDS": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    return env


def run_launcher(work: Path, name: str, inputs: Path, *options: str) -> dict:
    """``launcher submit ... --watch`` in a scratch folder; wall time, records, workers and engine starts."""
    store = work / f"store-{name}"
    shutil.rmtree(store, ignore_errors=True)
    m = run_measured([*LAUNCHER, "submit", str(inputs), *options, "--store", str(store), "--run-name", "bench", "--watch"],
                     env=engine_env(), cwd=str(work))
    status = json.loads(subprocess.run([*LAUNCHER, "status", "bench", "--store", str(store), "--json"], cwd=str(work),
                                       capture_output=True, text=True, check=True, env=engine_env()).stdout)
    t = status["totals"]
    return {"wall_s": m["wall_s"], "foreign_cores": m["foreign_cores"], "records": t["records_done"], "errors": t["errors"],
            "workers": t["workers"], "engine_starts": t["engine_starts"], "peak_rss_mb": m["peak_rss_mb"]}


def run_peer(work: Path, name: str, requests: Path, model_folder: str) -> dict:
    out, timing = work / f"run-batch-{name}.jsonl", work / f"run-batch-{name}.timing.json"
    cmd = [PYTHON, str(REPO / "benchmarks" / "_run_batch_timed.py"), "-i", str(requests), "-o", str(out),
           "--model", model_folder, "--served-model-name", "smollm2", "--dtype", "float32", "--max-model-len", "2048",
           "--enforce-eager", "--seed", "0"]
    m = run_measured(cmd, env={**engine_env(), "BENCH_TIMING": str(timing)})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {"wall_s": m["wall_s"], "foreign_cores": m["foreign_cores"], "records": len(rows),
            "errors": sum(1 for r in rows if r.get("error")), "workers": 1, "engine_starts": 1,
            "peak_rss_mb": m["peak_rss_mb"]}


def measure(contenders: dict, repeats: int) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for i in range(repeats):
        for name, run in contenders.items():
            r = run(i)
            print(f"  {name} #{i}: {r['wall_s']:.1f} s, {r['records']} records ({r['errors']} errors), "
                  f"{r['workers']} worker(s), {r['engine_starts']} engine start(s), other load {r['foreign_cores']:.2f} cores",
                  flush=True)
            results[name].append(r)
    return results


def report(title: str, results: dict[str, list[dict]], baseline: str) -> list[list]:
    base = median([r["wall_s"] for r in results[baseline]])
    rows = []
    for name, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        rows.append([name, f"{median(walls):.1f} ({spread(walls)})", f"{median(walls) / base:.2f}×",
                     runs[0]["workers"], median([r["engine_starts"] for r in runs]), runs[0]["records"],
                     f"{median([r['peak_rss_mb'] for r in runs]):,.0f}"])
    print(f"\n{title}\n" + table(["contender", "wall s (min–max)", f"vs {baseline}", "workers", "engine starts",
                                  "records", "peak RSS MB"], rows), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=("quickstart", "chunks"), default=("quickstart", "chunks"))
    ap.add_argument("--prompts", type=int, default=192, help="chat requests for the chunks comparison")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import vllm

    from bench_throughput import make_prompts
    from chunkpilot.model import resolve_model

    model_folder = resolve_model(None).path_or_id
    info = print_machine({"vllm": vllm.__version__, "model": model_folder})
    work = scratch_dir(args.workdir, "bench-workers-")
    out: dict = {"machine": info}
    if "quickstart" in args.only:
        requests = work / "examples-as-chat.jsonl"
        n = as_chat_requests(EXAMPLES, requests)
        print(f"quickstart: {n} records; workdir {work}", flush=True)
        results = measure({
            "launcher submit --chunks 4 --watch": lambda i: run_launcher(work, f"qs-{i}", EXAMPLES, "--chunks", "4"),
            "vllm run-batch": lambda i: run_peer(work, f"qs-{i}", requests, model_folder),
        }, args.repeats)
        out["quickstart"] = report("README quick start vs one vllm run-batch (same records, wall time incl. start-up)",
                                   results, "vllm run-batch")
    if "chunks" in args.only:
        prompts = work / "prompts.jsonl"
        make_prompts(prompts, args.prompts)
        results = measure({
            "--chunks 2": lambda i: run_launcher(work, f"c2-{i}", prompts, "--chunks", "2", "--workers", "2"),
            "--chunks 16 --workers 2": lambda i: run_launcher(work, f"c16-{i}", prompts, "--chunks", "16", "--workers", "2"),
        }, args.repeats)
        out["chunks"] = report(f"{args.prompts} chat prompts: many small chunks vs a few large ones", results, "--chunks 2")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
