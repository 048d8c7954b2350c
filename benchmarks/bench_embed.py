"""Benchmark 8 — embedding throughput: texts/s on the vLLM CPU engine with all-MiniLM-L6-v2.

One file of ``/v1/embeddings`` OpenAI Batch lines (varied texts of 5 to 120 words) is embedded
by three contenders, interleaved:

* chunkpilot: a real 1-chunk ``--task embed`` run, then the real worker process, committing a
  part every 5 s or 256 records (the defaults);
* ``vllm run-batch`` (through ``_run_batch_timed.py``, which only times it) on the same file:
  the peer that cannot resume;
* sentence-transformers' ``SentenceTransformer.encode`` on the same texts (``_st_encode.py``),
  batch size 64, on the same CPU threads.

texts/s = texts / time from model ready to output written (start-up excluded for all three;
wall time with start-up shown too). Each run's vectors are compared with sentence-transformers'
(lowest cosine reported). sentence-transformers is a benchmark-only dependency:
``.venv/bin/pip install sentence-transformers``.

    python benchmarks/bench_embed.py --texts 4000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
from pathlib import Path

from _util import PYTHON, REPO, median, print_machine, run_measured, scratch_dir, spread, table, write_json

WORDS = ("the a of to and in is it you that he was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look "
         "river mountain engine battery coffee library winter orbit protein ledger harbour violin").split()


def make_texts(path: Path, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120))).capitalize() + "." for _ in range(n)]
    with open(path, "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"custom_id": f"t{i}", "method": "POST", "url": "/v1/embeddings",
                                "body": {"model": "minilm", "input": text}}) + "\n")
    return texts


def vectors_of(path: Path) -> dict[str, list[float]]:
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("response") and row["response"].get("body"):
            out[row["custom_id"]] = row["response"]["body"]["data"][0]["embedding"]
    return out


def run_chunkpilot(work: Path, inputs: Path, i: int) -> dict:
    sys.path.insert(0, str(REPO))
    from chunkpilot.spec import SuccessMarker
    from chunkpilot.control.collect import collect
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.submit import SubmitOptions, plan_run, write_run

    store = work / f"store-{i}"
    shutil.rmtree(store, ignore_errors=True)
    plan = plan_run(SubmitOptions(inputs=(str(inputs),), chunks=1, store_uri=str(store), engine="vllm", task="embed",
                                  run_name=f"embed-{i}"))
    write_run(plan, str(store))
    run = open_run(str(store), plan.spec.run_id)
    m = run_measured([PYTHON, "-m", "worker", "--run", run.run_uri, "--worker", "w0", "--attempt", "1"],
                     env={**_env(), "CHUNKPILOT_LOG_LEVEL": "WARNING"}, cwd=str(REPO))
    marker = SuccessMarker.from_json(run.run_store.get("out/0000/_SUCCESS"))
    out = work / f"chunkpilot-{i}.jsonl"
    collect(run, str(out))
    return {"wall_s": m["wall_s"], "gen_s": marker.seconds, "vectors": vectors_of(out), "peak_rss_mb": m["peak_rss_mb"]}


def run_peer(work: Path, inputs: Path, model: str, i: int) -> dict:
    out, timing = work / f"run-batch-{i}.jsonl", work / f"run-batch-{i}.timing.json"
    cmd = [PYTHON, str(REPO / "benchmarks" / "_run_batch_timed.py"), "-i", str(inputs), "-o", str(out), "--model", model,
           "--served-model-name", "minilm", "--runner", "pooling", "--dtype", "float32", "--enforce-eager", "--seed", "0"]
    m = run_measured(cmd, env={**_env(), "BENCH_TIMING": str(timing)})
    return {"wall_s": m["wall_s"], "gen_s": json.loads(timing.read_text())["gen_s"], "vectors": vectors_of(out),
            "peak_rss_mb": m["peak_rss_mb"]}


def run_st(work: Path, inputs: Path, model: str, i: int) -> dict:
    out, timing = work / f"st-{i}.jsonl", work / f"st-{i}.timing.json"
    m = run_measured([PYTHON, str(REPO / "benchmarks" / "_st_encode.py"), str(inputs), str(out), model, str(timing)], env=_env())
    return {"wall_s": m["wall_s"], "gen_s": json.loads(timing.read_text())["gen_s"], "vectors": vectors_of(out),
            "peak_rss_mb": m["peak_rss_mb"]}


def _env() -> dict:
    import os

    return {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from chunkpilot.model import minilm_folder

    model = str(minilm_folder())
    info = print_machine({"model": model})
    work = scratch_dir(args.workdir, "bench-embed-")
    try:
        inputs = work / "embeddings.jsonl"
        texts = make_texts(inputs, args.texts)
        runners = {"chunkpilot": lambda i: run_chunkpilot(work, inputs, i), "vllm run-batch": lambda i: run_peer(work, inputs, model, i),
                   "sentence-transformers": lambda i: run_st(work, inputs, model, i)}
        results: dict[str, list] = {k: [] for k in runners}
        for i in range(args.repeats):
            order = list(runners) if i % 2 == 0 else list(runners)[::-1]
            for name in order:
                r = runners[name](i)
                results[name].append(r)
                print(f"  repeat {i + 1} {name}: {len(r['vectors'])} vectors in {r['gen_s']:.2f}s = "
                      f"{len(r['vectors']) / r['gen_s']:.0f} texts/s (wall {r['wall_s']:.1f}s)", flush=True)
        reference = results["sentence-transformers"][-1]["vectors"]
        peer = median([len(r["vectors"]) / r["gen_s"] for r in results["vllm run-batch"]])
        st = median([len(r["vectors"]) / r["gen_s"] for r in results["sentence-transformers"]])
        rows = []
        for name, runs in results.items():
            rate = median([len(r["vectors"]) / r["gen_s"] for r in runs])
            worst = min(cosine(v, reference[k]) for k, v in runs[-1]["vectors"].items())
            rows.append([name, f"{rate:.0f} ({spread([len(r['vectors']) / r['gen_s'] for r in runs])})", f"{rate / peer:.2f}×",
                         f"{rate / st:.2f}×", f"{median([len(texts) / r['wall_s'] for r in runs]):.0f}",
                         f"{median([r['peak_rss_mb'] for r in runs]):.0f}", f"{worst:.5f}", len(runs[-1]["vectors"])])
        print()
        print(table(["contender", "texts/s (min–max)", "vs run-batch", "vs sentence-transformers", "texts/s incl. start-up",
                     "peak RSS MB", "lowest cosine vs sentence-transformers", "vectors"], rows))
        print(f"medians of {args.repeats} interleaved runs; {args.texts} texts of 5-120 words")
        write_json(args.json, {"machine": info, "results": {k: [{kk: vv for kk, vv in r.items() if kk != "vectors"} for r in v]
                                                            for k, v in results.items()}})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
