"""Benchmark 3 — planning a big input into 1,000 chunks: chunkpilot's planner vs the seed's copies.

Synthesizes JSONL prompts (varied line lengths, valid JSON) — a ≥10 GB file on local
disk and a 1 GB one, the latter also uploaded to an S3 server (moto on loopback, behind
a request-counting proxy) — and measures, each in its own process (peak RSS is the
process's own), interleaved:

* planner: ``plan_run`` + ``write_run`` (what ``launcher submit`` does before launching):
  split points by bytes, each moved to a line start with a small ranged read, 1,000
  manifests written;
* seed: the tutorial's "Scale out to Multiple Nodes" — read every line, cut 1,000
  chunks by line count, write each chunk as a copy (the seed's remainder-dropping bug
  fixed). It holds the whole input in memory, so it runs at the small size only;
  its 10 GB figures are extrapolated (linearly) and marked so.

Bytes read: the planner's own count of probe bytes (cross-checked with the kernel's
``rchar`` on local disk); requests by method counted at the proxy.

    python benchmarks/bench_plan.py --gb 10 --small-gb 1 --s3-gb 1 --chunks 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from _util import (
    MB,
    PYTHON,
    REPO,
    admin_client,
    median,
    print_machine,
    run_measured,
    s3_server,
    scratch_dir,
    spread,
    table,
    write_json,
)

GB = 1024**3
CHILD = str(REPO / "benchmarks" / "_plan_child.py")


def synthesize(path: Path, size: int, seed: int = 0) -> int:
    """A JSONL file of about ``size`` bytes: a 64 MB block of varied chat lines, repeated."""
    rng = random.Random(seed)
    words = "the a of to and in is it you that he was for on are with as his they be at one have this".split()
    lines, block_size, i = [], 0, 0
    while block_size < 64 * MB:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 120)))
        line = json.dumps({"custom_id": f"r{i}", "messages": [{"role": "user", "content": text}],
                           "max_tokens": rng.randint(8, 256)}) + "\n"
        lines.append(line)
        block_size += len(line)
        i += 1
    block = "".join(lines).encode()
    written = 0
    with open(path, "wb") as f:
        while written < size:
            f.write(block)
            written += len(block)
    return written


def run_child(which: str, source: str, dest: str, chunks: int) -> dict:
    import os
    import subprocess

    env = dict(os.environ)
    m = run_measured([PYTHON, CHILD, which, source, dest, str(chunks)], stdout=subprocess.PIPE, env=env)
    return {**m, **json.loads(m["stdout"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=10.0, help="size of the big local input (planner only)")
    ap.add_argument("--small-gb", type=float, default=1.0, help="size of the input both approaches plan (local and S3)")
    ap.add_argument("--s3-gb", type=float, default=1.0, help="size of the input on the S3 server (0: skip S3)")
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--s3-repeats", type=int, default=1, help="the S3 server (moto) is slow at ranged reads of big objects")
    ap.add_argument("--workdir", default=None, help="where the synthetic inputs go (default: the system temp folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = print_machine()
    work = scratch_dir(args.workdir, "bench-plan-")
    results: dict[str, dict] = {}
    try:
        t0 = time.perf_counter()
        big, small = work / "big.jsonl", work / "small.jsonl"
        big_size = synthesize(big, int(args.gb * GB))
        small_size = synthesize(small, int(args.small_gb * GB), seed=1)
        print(f"inputs: {big_size / GB:.2f} GB and {small_size / GB:.2f} GB (written in {time.perf_counter() - t0:.0f}s), "
              f"workdir {work}", flush=True)

        local = {"planner, big local": ("planner", str(big)), "planner, small local": ("planner", str(small)),
                 "seed, small local": ("seed", str(small))}
        runs: dict[str, list[dict]] = {k: [] for k in local}
        for r in range(args.repeats):
            for name, (which, source) in local.items():
                dest = work / f"out-{r}"
                runs[name].append(run_child(which, source, str(dest), args.chunks))
                shutil.rmtree(dest, ignore_errors=True)
            print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]['wall_s']:.1f}s" for k, v in runs.items()), flush=True)
        for name, rs in runs.items():
            results[name] = summarize(rs)

        if args.s3_gb > 0:
            with s3_server() as (proxy, direct):
                client = admin_client(direct)
                client.create_bucket(Bucket="bench-plan")
                s3_input = work / "s3.jsonl"
                s3_size = synthesize(s3_input, int(args.s3_gb * GB), seed=2)
                t0 = time.perf_counter()
                client.upload_file(str(s3_input), "bench-plan", "prompts/big.jsonl")
                print(f"uploaded {s3_size / GB:.2f} GB to the S3 server in {time.perf_counter() - t0:.0f}s", flush=True)
                s3_input.unlink()
                # The server's own cost of one small ranged GET of this object (moto copies the whole object each time).
                t0 = time.perf_counter()
                for i in range(5):
                    client.get_object(Bucket="bench-plan", Key="prompts/big.jsonl", Range=f"bytes={i * 9973}-{i * 9973 + 4095}")["Body"].read()
                server_range_s = (time.perf_counter() - t0) / 5
                t0 = time.perf_counter()
                for i in range(20):
                    client.put_object(Bucket="bench-plan", Key=f"probe/{i}", Body=b"x" * 300)
                server_put_s = (time.perf_counter() - t0) / 20
                print(f"S3 server: one 4 KB ranged GET of the {s3_size / GB:.2f} GB object takes {server_range_s:.3f}s, "
                      f"one small PUT {server_put_s:.3f}s (direct, no proxy)", flush=True)
                results["s3_server"] = {"ranged_get_s": server_range_s, "small_put_s": server_put_s}
                remote = {"planner, S3": "planner", "seed, S3": "seed"}
                s3_runs: dict[str, list[dict]] = {k: [] for k in remote}
                for r in range(args.s3_repeats):
                    for name, which in remote.items():
                        before = dict(proxy.requests)
                        m = run_child(which, "s3://bench-plan/prompts/big.jsonl", f"s3://bench-plan/runs-{which}-{r}", args.chunks)
                        after = dict(proxy.requests)
                        m["requests"] = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)}
                        s3_runs[name].append(m)
                    print(f"  S3 repeat {r + 1}: " + ", ".join(f"{k} {v[-1]['wall_s']:.1f}s" for k, v in s3_runs.items()), flush=True)
                for name, rs in s3_runs.items():
                    results[name] = summarize(rs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The seed at the big size, extrapolated linearly from the small one (it could not run: memory).
    scale = big_size / small_size
    seed_small = results["seed, small local"]
    results["seed, big local (extrapolated)"] = {
        "wall_s": seed_small["wall_s"] * scale, "peak_rss_mb": seed_small["peak_rss_mb"] * scale,
        "bytes_read": seed_small["bytes_read"] * scale, "input_bytes": big_size, "extrapolated": True,
        "seconds": seed_small["seconds"] * scale}

    rows = []
    order = ["planner, big local", "seed, big local (extrapolated)", "planner, small local", "seed, small local",
             "planner, S3", "seed, S3"]
    for name in order:
        if name not in results:
            continue
        r = results[name]
        share = 100 * r["bytes_read"] / r["input_bytes"]
        reqs = r.get("requests")
        work_s = "-" if r.get("extrapolated") else (
            f"{r['seconds']:.2f}" + (f" ({r['probe_s']:.2f} + {r['write_s']:.2f})" if r.get("probe_s") == r.get("probe_s") else ""))
        rows.append([name, f"{r['input_bytes'] / GB:.2f}",
                     f"{r['wall_s']:.2f}" + (f" ({spread(r['wall_runs'])})" if "wall_runs" in r else " (est.)"), work_s,
                     f"{r['bytes_read'] / 1024:,.0f}", f"{share:.4f}%", f"{r['peak_rss_mb']:.0f}",
                     ", ".join(f"{m} {n}" for m, n in sorted(reqs.items())) if reqs else "-"])
    print()
    print(table(["approach, input", "GB", "process wall s (min–max)", "planning s (probes + manifests)", "KB read",
                 "share of input read", "peak RSS MB", "S3 requests"], rows))
    for small_name, seed_name in (("planner, small local", "seed, small local"), ("planner, S3", "seed, S3"), ("planner, big local", "seed, big local (extrapolated)")):
        if small_name in results and seed_name in results:
            p, s = results[small_name], results[seed_name]
            print(f"{seed_name} / {small_name}: time {s['wall_s'] / p['wall_s']:.0f}×, bytes read {s['bytes_read'] / max(1, p['bytes_read']):,.0f}×, "
                  f"peak RSS {s['peak_rss_mb'] / p['peak_rss_mb']:.1f}×")
    print(f"medians of {args.repeats} interleaved runs; each in its own process (imports before the clock; wall s is the process's whole life)")
    write_json(args.json, {"benchmark": "plan", "machine": info, "args": vars(args), "results": results})


def summarize(rs: list[dict]) -> dict:
    out = {"wall_s": median([r["wall_s"] for r in rs]), "wall_runs": [r["wall_s"] for r in rs],
           "seconds": median([r["seconds"] for r in rs]), "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
           "probe_s": median([r.get("plan_seconds", float("nan")) for r in rs]),
           "write_s": median([r.get("write_seconds", float("nan")) for r in rs]),
           "bytes_read": median([r["bytes_read"] for r in rs]), "rchar": median([r["rchar"] for r in rs]),
           "input_bytes": rs[0]["input_bytes"], "chunks": rs[0]["chunks"]}
    if "requests" in rs[0]:
        out["requests"] = rs[-1]["requests"]
    return out


if __name__ == "__main__":
    sys.exit(main())
