"""Benchmark 12 — the engine is never starved: vLLM's waiting queue while records remain.

A real 1-chunk run on vLLM CPU (SmolLM2-135M, float32, the worker's defaults: nothing set but
the prompts), answered by the real worker process with one probe (benchmarks/_fed_worker.py)
that reads vLLM's scheduler after every engine step: how many requests wait, how many run, and
whether the worker has read all of the chunk's records yet. While records remain, the worker
should keep the engine's batch full (``running`` at ``max_num_seqs``) with requests waiting
behind it: steps with an empty waiting queue before the last record was read are starvation.

The GPU figure is derived, not guessed: vLLM's own ``EngineArgs.get_batch_defaults`` is asked
what ``max_num_seqs`` it gives the offline ``LLM`` class on a device of an H100's memory and
name, and the worker's in-flight count follows from it (``worker.engines.base.read_ahead``).

    python benchmarks/bench_feed.py --prompts 768
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from _util import PYTHON, REPO, median, print_machine, run_measured, scratch_dir, table, write_json

GiB = 1 << 30


def gpu_defaults(name: str, memory: int) -> int:
    """vLLM's default ``max_num_seqs`` for the offline LLM class on a device of ``memory`` bytes named ``name``."""
    from unittest import mock

    from vllm.engine.arg_utils import EngineArgs
    from vllm.platforms import current_platform
    from vllm.usage.usage_lib import UsageContext

    with mock.patch.object(type(current_platform), "get_device_total_memory", lambda *a, **k: memory), \
            mock.patch.object(type(current_platform), "get_device_name", lambda *a, **k: name), \
            mock.patch.object(type(current_platform), "is_cpu", lambda *a, **k: False):
        _, seqs = EngineArgs.get_batch_defaults(world_size=1)
    return seqs[UsageContext.LLM_CLASS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=768)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import vllm

    from bench_throughput import engine_env, make_prompts
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.submit import SubmitOptions, plan_run, write_run
    from worker.engines.base import read_ahead

    info = print_machine({"vllm": vllm.__version__})
    work = scratch_dir(args.workdir, "bench-feed-")
    prompts = work / "prompts.jsonl"
    make_prompts(prompts, args.prompts)
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    plan = plan_run(SubmitOptions(inputs=(str(prompts),), chunks=1, store_uri=str(store), engine="vllm",
                                  max_tokens=64, run_name="feed"))
    write_run(plan, str(store))
    run = open_run(str(store), "feed")
    feed = work / "feed.txt"
    m = run_measured([PYTHON, str(REPO / "benchmarks" / "_fed_worker.py"), "--run", run.run_uri, "--worker", "w0"],
                     env={**engine_env(), "BENCH_FEED": str(feed), "CHUNKPILOT_LOG_LEVEL": "WARNING"}, cwd=str(REPO))
    steps = [tuple(map(int, line.split())) for line in feed.read_text().splitlines()]
    batch = steps[0][3]
    reading = [s for s in steps if not s[2]]  # steps while records remained unread
    starved = [s for s in reading if s[0] == 0]
    rows = [["vLLM CPU (this machine)", batch, read_ahead(batch), len(steps), len(reading), len(starved),
             median([s[1] for s in reading]), median([s[0] for s in reading]), f"{m['wall_s']:.1f}"]]
    print(f"\n{args.prompts} chat prompts, 1 chunk, the worker's defaults; workdir {work}\n" + table(
        ["engine", "max_num_seqs (vLLM's config)", "kept in flight", "engine steps", "steps with records unread",
         "of them with an empty waiting queue", "running (median)", "waiting (median)", "wall s"], rows))
    derived = []
    for label, name, memory in (("H100 80GB", "nvidia h100 80gb hbm3", 80 * GiB), ("H200", "nvidia h200", 141 * GiB),
                                ("A100 80GB", "nvidia a100-sxm4-80gb", 80 * GiB), ("L4", "nvidia l4", 24 * GiB),
                                ("B200", "nvidia b200", 180 * GiB)):
        seqs = gpu_defaults(name, memory)
        derived.append([label, seqs, read_ahead(seqs)])
    print("\nGPU defaults, from vllm.engine.arg_utils.EngineArgs.get_batch_defaults (offline LLM class):\n" +
          table(["device", "max_num_seqs", "the worker keeps in flight"], derived), flush=True)
    write_json(args.json, {"machine": info, "cpu": rows, "gpu": derived})


if __name__ == "__main__":
    main()
