"""Compressed inputs: planning one big .jsonl.gz into N chunks, and collect's gzip output.

Measures (one process, this machine):
  * planning time of ``JsonlFormat.plan`` with staging (one decompression pass + zstd pieces), and
    what it read and wrote;
  * per chunk, the bytes a worker decompresses (its staged piece) and reads (the piece's compressed
    size) against its share (the decompressed total / N, the compressed total / N); a sample of
    chunks is read for real through ``records()`` and its decompressed bytes counted;
  * ``chunkpilot.control.collect.encode`` writing .jsonl.gz from a JSON Lines file against ``gzip -6 -c`` of
    the same file (the step collect adds for ``-o *.jsonl.gz``; the merge itself is the plain one).

    .venv/bin/python benchmarks/bench_compressed.py --mb 1000 --chunks 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time

from chunkpilot.formats import get_format
from chunkpilot.formats import staging
from chunkpilot.spec import InputPin
from chunkpilot.store import LocalStore, split_object_uri
from chunkpilot.control.collect.encode import encode


def make_input(path: str, mb: int) -> int:
    rng = random.Random(0)
    words = [f"w{rng.randrange(20000)}" for _ in range(50000)]
    written, i = 0, 0
    with open(path, "wb") as f:
        while written < mb * 1_000_000:
            block = b"".join(json.dumps({"custom_id": f"r{i + j}", "prompt": " ".join(rng.choices(words, k=rng.randint(20, 120)))}).encode() + b"\n"
                             for j in range(2000))
            i += 2000
            f.write(block)
            written += len(block)
    return written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1000, help="decompressed size of the input, MB")
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--read-sample", type=int, default=5, help="chunks read for real through records()")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-compressed-", dir=args.dir)
    plain, packed = os.path.join(folder, "in.jsonl"), os.path.join(folder, "in.jsonl.gz")
    t = time.perf_counter()
    size = make_input(plain, args.mb)
    subprocess.run(f"gzip -6 -c {plain} > {packed}", shell=True, check=True)
    print(f"input: {size / 1e6:.0f} MB JSONL, {os.path.getsize(packed) / 1e6:.0f} MB gzip ({time.perf_counter() - t:.0f} s to make)")

    store, key = split_object_uri(packed)
    info = store.head(key)
    pin = InputPin(packed, info.size, info.etag)
    fmt = get_format("jsonl")
    t = time.perf_counter()
    planned = fmt.plan([pin], args.chunks, stage=LocalStore(os.path.join(folder, "run")), batch="b")
    plan_s = time.perf_counter() - t
    pinned = planned.pins[0]
    staged_bytes = sum(os.path.getsize(uri) for _, _, uri in pinned.staged)
    print(f"plan: {plan_s:.1f} s for {len(planned.manifests)} chunks ({pinned.units / 1e6 / plan_s:.0f} MB/s decompressed); "
          f"read {planned.bytes_read / 1e6:.0f} MB, staged {len(pinned.staged)} pieces, {staged_bytes / 1e6:.0f} MB zstd")

    share, share_c = pinned.units / len(planned.manifests), pin.size / len(planned.manifests)
    ratios, read_ratios = [], []
    for m in planned.manifests:
        pieces = [(a, b, uri) for a, b, uri in pinned.staged if any(a < r.end and b > r.start for r in m.ranges)]
        ratios.append(sum(b - a for a, b, _ in pieces) / share)
        read_ratios.append(sum(os.path.getsize(uri) for _, _, uri in pieces) / share_c)
    print(f"per worker, decompressed / its share: max {max(ratios):.2f}x, min {min(ratios):.2f}x; "
          f"compressed bytes read / compressed share: max {max(read_ratios):.2f}x, min {min(read_ratios):.2f}x")

    counted = []
    original = staging.read_piece

    def counting(uri):
        for block in original(uri):
            counted[-1] += len(block)
            yield block

    import chunkpilot.formats.jsonl as jsonl_module

    jsonl_module.read_piece = counting
    try:
        for m in planned.manifests[:: max(1, len(planned.manifests) // args.read_sample)][: args.read_sample]:
            counted.append(0)
            t = time.perf_counter()
            n = sum(1 for _ in fmt.records(planned.pins, m))
            print(f"  chunk {m.chunk}: {n} records, decompressed {counted[-1] / 1e6:.1f} MB for a {m.size / 1e6:.1f} MB range "
                  f"({counted[-1] / share:.2f}x share) in {time.perf_counter() - t:.1f} s")
    finally:
        jsonl_module.read_piece = original

    out = os.path.join(folder, "out.jsonl.gz")
    t = time.perf_counter()
    encode(plain, out, None, "gzip", "openai", "response")
    ours = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(f"gzip -6 -c {plain} > {folder}/cli.gz", shell=True, check=True)
    cli = time.perf_counter() - t
    print(f"collect's .jsonl.gz step: {ours:.1f} s ({size / 1e6 / ours:.0f} MB/s, {os.path.getsize(out) / 1e6:.0f} MB) vs "
          f"gzip -6 CLI {cli:.1f} s ({os.path.getsize(folder + '/cli.gz') / 1e6:.0f} MB): {cli / ours:.2f}x gzip's speed")
    subprocess.run(["rm", "-rf", folder], check=True)


if __name__ == "__main__":
    main()
