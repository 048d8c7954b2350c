"""Benchmark 7 — Parquet: planning from footers alone, and writing merged records back as Parquet.

Planning: a ~1 GB Parquet file of prompt rows (row groups of pyarrow's default size), copied to
make an input of ``--gb`` GB in several files, planned into ``--chunks`` chunks by
``plan_run`` + ``write_run`` in a process of its own (``_plan_child.py planner``): bytes read as
a share of the input, peak RSS, wall time — on local disk and on the S3 test server (moto on
loopback).

Collect: a synthetic finished run over a Parquet input of N rows (an id, a prompt and a nested
column), its answers in parts as workers write them (each part with its answer columns), merged by ``launcher collect RUN -o
out.parquet`` (a process of its own: every input column with its type, the answer and error
columns, row group by row group) against the plain pyarrow baseline of the same rows
(``pq.write_table(pq.read_table(input), out)``: no answers joined, all of it in memory),
and against the same job done with pyarrow alone, everything in memory (``_parquet_baseline.py``:
every part read with pyarrow's JSON reader, joined to ``pq.read_table(input)``), interleaved;
medians, peak RSS.

    python benchmarks/bench_parquet.py --gb 5 --s3-gb 5 --chunks 1000 --rows 1000000 4000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from _util import (
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
RUN = "bench-parquet"
PER_CHUNK = 10_000
PER_PART = 256


def prompt_table(lo: int, hi: int, filler: int):
    import pyarrow as pa

    words = "the a of to and in is it you that he was for on are with as his they be at one have this".split()
    return pa.table({
        "id": pa.array(range(lo, hi), pa.int64()),
        "prompt": [" ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 40)) + " " + os.urandom(filler).hex()
                   for i in range(lo, hi)],
        "meta": [{"lang": "de" if i % 2 else "en", "n": i} for i in range(lo, hi)],
    })


def synthesize_input(folder: Path, gb: float) -> list[Path]:
    """One file of ~1 GB (or ``gb`` if less), copied until the files make ``gb`` GB."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    first = folder / "part-0000.parquet"
    target, rows, writer = min(gb, 1.0) * GB, 0, None
    while rows * 880 < target:  # ~880 bytes a row on disk: random hex does not compress
        batch = prompt_table(rows, rows + 100_000, filler=400)
        writer = writer or pq.ParquetWriter(first, batch.schema)
        writer.write_table(batch)
        rows += batch.num_rows
    writer.close()
    files = [first]
    while sum(f.stat().st_size for f in files) < gb * GB * 0.98:
        copy = folder / f"part-{len(files):04d}.parquet"
        shutil.copyfile(first, copy)
        files.append(copy)
    return files


def plan_once(source: str, store: str, chunks: int, env=None) -> dict:
    result = run_measured([PYTHON, CHILD, "planner", source, store, str(chunks)], stdout=-1, env=env)
    out = json.loads(result["stdout"].strip().splitlines()[-1])
    out.update(wall_s=result["wall_s"], peak_rss_mb=result["peak_rss_mb"])
    return out


def synthesize_run(root: Path, rows: int) -> Path:
    """A finished run over a Parquet input of ``rows`` rows, its parts (and their answer columns) as
    the worker writes them."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO))
    from chunkpilot import answer_columns, layout
    from chunkpilot.layout import PartName
    from chunkpilot.output import ok_line
    from chunkpilot.requests import Request, Result
    from chunkpilot.spec import ChunkManifest, ChunkSummary, InputPin, RunSpec, SourceRange, SuccessMarker

    data = root / "input.parquet"
    writer = None
    for lo in range(0, rows, 200_000):
        t = prompt_table(lo, min(rows, lo + 200_000), filler=8)
        writer = writer or pq.ParquetWriter(data, t.schema)
        writer.write_table(t)
    writer.close()
    run = root / "store" / RUN
    chunks = (rows + PER_CHUNK - 1) // PER_CHUNK
    sample = ok_line(RUN, Request((0, 0), "0", "completion", {}, prompt="x"),
                     Result("r", text="ANSWER", finish_reason="stop", prompt_tokens=9, completion_tokens=5), "m", "rev")
    summaries = []
    for c in range(chunks):
        chunk, lo, hi = f"{c:04d}", c * PER_CHUNK, min(rows, (c + 1) * PER_CHUNK)
        summaries.append(ChunkSummary(chunk, hi - lo))
        (run / "chunks").mkdir(parents=True, exist_ok=True)
        (run / "chunks" / f"{chunk}.json").write_bytes(ChunkManifest(chunk, (SourceRange(0, lo, hi),), "rows").to_json())
        out = run / "out" / chunk
        out.mkdir(parents=True)
        for seq, start in enumerate(range(lo, hi, PER_PART)):
            end = min(hi, start + PER_PART)
            lines = []
            for i in range(start, end):
                line = sample.replace(b'"batch_req_bench-parquet_0_0"', f'"batch_req_{RUN}_0_{i}"'.encode())
                lines.append(line.replace(b'"custom_id": "0"', f'"custom_id": "{i}"'.encode()).replace(b"ANSWER", f"answer {i}".encode()))
            name = PartName((0, start), (0, end), 1, seq, end - start)
            (out / name.filename).write_bytes(b"".join(lines))
            columns = run / layout.answer_columns(layout.part(chunk, name))
            columns.parent.mkdir(parents=True, exist_ok=True)
            columns.write_bytes(answer_columns.encode(lines))
        (out / "_SUCCESS").write_bytes(SuccessMarker(chunk, 1, hi - lo, 0, hi - lo, 0, 0, 0, 0, 1.0, "2026-01-01T00:00:00+00:00",
                                                     units=hi - lo).to_json())
    spec = RunSpec(run_id=RUN, created_at="2026-01-01T00:00:00+00:00",
                   inputs=(InputPin(str(data), data.stat().st_size, "synthetic", units=rows),),
                   chunks=tuple(summaries), engine="echo", model="echo", model_revision="echo-1", sampling={},
                   backend="local", use_spot=None, max_attempts=3, workers=1, chunkpilot_version="bench",
                   input_format="parquet", unit="rows")
    (run / "run.json").write_bytes(spec.to_json())
    return root / "store"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=5.0, help="Parquet input to plan, on local disk")
    ap.add_argument("--s3-gb", type=float, default=5.0, help="... and on the S3 test server (0: skip)")
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000], help="rows of the collect runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = print_machine()
    work = scratch_dir(args.workdir, "bench-parquet-")
    results: dict = {"machine": info, "plan": {}, "collect": {}}
    try:
        t0 = time.perf_counter()
        files = synthesize_input(work / "data", max(args.gb, args.s3_gb))
        size = sum(f.stat().st_size for f in files)
        print(f"input: {len(files)} Parquet file(s), {size / GB:.2f} GB (synthesized in {time.perf_counter() - t0:.0f}s)", flush=True)
        local = work / "local"
        local.mkdir()
        for f in files[: max(1, round(args.gb))]:
            os.link(f, local / f.name)
        runs = [plan_once(str(local), str(work / f"store-{i}"), args.chunks) for i in range(args.repeats)]
        results["plan"]["local"] = runs
        rows = [["local disk", f"{sum(f.stat().st_size for f in local.iterdir()) / GB:.2f} GB", runs[0]["chunks"],
                 f"{median([r['bytes_read'] for r in runs]) / 1024:.0f} KB",
                 f"{100 * median([r['bytes_read'] for r in runs]) / runs[0]['input_bytes']:.4f}%",
                 f"{median([r['peak_rss_mb'] for r in runs]):.0f}", f"{median([r['wall_s'] for r in runs]):.2f} ({spread([r['wall_s'] for r in runs])})"]]
        if args.s3_gb:
            with s3_server() as (proxy, direct):
                client = admin_client(direct)
                client.create_bucket(Bucket="bench-parquet")
                t0 = time.perf_counter()
                for f in files[: max(1, round(args.s3_gb))]:
                    client.upload_file(str(f), "bench-parquet", f"data/{f.name}")
                print(f"uploaded to the S3 test server in {time.perf_counter() - t0:.0f}s", flush=True)
                env = {**os.environ, "AWS_ENDPOINT_URL": direct}
                s3runs = [plan_once("s3://bench-parquet/data/", f"s3://bench-parquet/runs-{i}", args.chunks, env=env)
                          for i in range(args.repeats)]
                results["plan"]["s3"] = s3runs
                rows.append(["S3 test server", f"{s3runs[0]['input_bytes'] / GB:.2f} GB", s3runs[0]["chunks"],
                             f"{median([r['bytes_read'] for r in s3runs]) / 1024:.0f} KB",
                             f"{100 * median([r['bytes_read'] for r in s3runs]) / s3runs[0]['input_bytes']:.4f}%",
                             f"{median([r['peak_rss_mb'] for r in s3runs]):.0f}",
                             f"{median([r['wall_s'] for r in s3runs]):.2f} ({spread([r['wall_s'] for r in s3runs])})"])
        print()
        print(table(["input", "size", "chunks", "read to plan", "share of input", "peak RSS MB", "wall s (min–max)"], rows))
        print("planning = plan_run + write_run in a process of its own; read = footers + a 1 KB look at each file's start")
        shutil.rmtree(work / "data", ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)

        crows = []
        for n in args.rows:
            root = work / f"collect-{n}"
            root.mkdir()
            t0 = time.perf_counter()
            store = synthesize_run(root, n)
            print(f"\n{n:,} rows: synthesized in {time.perf_counter() - t0:.0f}s", flush=True)
            launcher = [PYTHON, "-m", "launcher.cli", "collect", RUN, "--store", str(store), "-o", str(root / "out.parquet")]
            baseline = [PYTHON, "-c", "import sys, pyarrow.parquet as pq; pq.write_table(pq.read_table(sys.argv[1]), sys.argv[2])",
                        str(root / "input.parquet"), str(root / "baseline.parquet")]
            same_job = [PYTHON, str(REPO / "benchmarks" / "_parquet_baseline.py"), str(store / RUN),
                        str(root / "input.parquet"), str(root / "same-job.parquet")]
            timings = {"collect": [], "pyarrow": [], "job": []}
            for r in range(args.repeats):
                order = [("collect", launcher), ("pyarrow", baseline), ("job", same_job)]
                for name, cmd in (order if r % 2 == 0 else order[::-1]):
                    timings[name].append(run_measured(cmd, cwd=str(REPO)))
                print(f"  repeat {r + 1}: collect {timings['collect'][-1]['wall_s']:.2f}s, pyarrow read+write "
                      f"{timings['pyarrow'][-1]['wall_s']:.2f}s, pyarrow same job {timings['job'][-1]['wall_s']:.2f}s", flush=True)
            import pyarrow.parquet as pq

            out = pq.read_table(root / "out.parquet", columns=["id", "response"])
            assert out.num_rows == n and out.column("id").to_pylist()[-1] == n - 1
            assert out.column("response").to_pylist()[:2] == ["answer 0", "answer 1"]
            c, p, j = (median([t["wall_s"] for t in timings[k]]) for k in ("collect", "pyarrow", "job"))
            crows.append([f"{n:,}", f"{c:.2f} ({spread([t['wall_s'] for t in timings['collect']])})",
                          f"{p:.2f} ({spread([t['wall_s'] for t in timings['pyarrow']])})", f"{p / c:.2f}×",
                          f"{j:.2f} ({spread([t['wall_s'] for t in timings['job']])})", f"{j / c:.2f}×",
                          *(f"{median([t['peak_rss_mb'] for t in timings[k]]):.0f}" for k in ("collect", "pyarrow", "job"))])
            results["collect"][n] = timings
            shutil.rmtree(root, ignore_errors=True)
        print()
        print(table(["rows", "collect -o out.parquet s", "pyarrow read+write s", "vs read+write", "pyarrow same job s",
                     "vs same job", "collect RSS MB", "read+write RSS MB", "same job RSS MB"], crows))
        print(f"medians of {args.repeats} interleaved runs; collect also joins each row's answer from the parts")
        write_json(args.json, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
