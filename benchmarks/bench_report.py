"""Benchmark 9 — the run report of a big run: ``launcher report`` on a finished 1,000-chunk run.

A synthetic finished run in a local store, shaped like a real one: one input file of
``--records`` JSON Lines records split into ``--chunks`` chunks; each chunk done with 4 parts
(one in 50 records an error line, with its real output line) and a ``_SUCCESS`` marker; every
``--interrupted``-th chunk killed once and done on a second attempt; every attempt recorded with
its start, end and price, and every worker life's history (start, ready, a commit every
``--commit-seconds``, beats, end). Measured: the whole ``launcher report RUN -o FILE`` command
(start-up included), the page's size, and the share of it that is the inlined Chart.js.

    python benchmarks/bench_report.py --chunks 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _util import PYTHON, median, print_machine, run_measured, spread, table, write_json

from chunkpilot import layout
from chunkpilot.history import History
from chunkpilot.layout import PartName
from chunkpilot.names import chunk_id, job_name
from chunkpilot.output import error_line
from chunkpilot.spec import AttemptRecord, ChunkManifest, ChunkSummary, InputPin, RunSpec, SourceRange, SuccessMarker

RUN = "bench-report-run"


def synthesize(root: Path, chunks: int, records: int, interrupted_every: int, commit_seconds: float) -> dict:
    """Write the finished run under ``root`` (a local store); returns counts."""
    line = b'{"custom_id": "r", "prompt": "a prompt of a few words to answer", "max_tokens": 64}\n'
    per_chunk = records // chunks
    source = root / "in.jsonl"
    source.write_bytes(line * (per_chunk * chunks))
    chunk_bytes = per_chunk * len(line)
    ids = [chunk_id(i, chunks) for i in range(chunks)]
    spec = RunSpec(run_id=RUN, created_at="2026-12-03T10:00:00+00:00",
                   inputs=(InputPin(str(source), chunk_bytes * chunks, "etag"),),
                   chunks=tuple(ChunkSummary(c, chunk_bytes) for c in ids), engine="echo", model="echo",
                   model_revision="echo-1", sampling={"max_tokens": 64, "temperature": 0.0}, backend="local",
                   use_spot=None, max_attempts=3, workers=1, chunkpilot_version="bench", price_per_hour=0.35,
                   on_demand_price_per_hour=1.0)
    run = root / "runs" / RUN

    def put(key: str, body: bytes) -> None:
        path = run / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    put(layout.RUN_SPEC, spec.to_json())
    t0 = time.time() - 6 * 3600
    counts = {"parts": 0, "lives": 0, "attempts": 0, "history_bytes": 0}
    rate = 4.0  # records/s per worker
    for i, c in enumerate(ids):
        base = i * chunk_bytes
        put(layout.manifest(c), ChunkManifest(c, (SourceRange(0, base, base + chunk_bytes),)).to_json())
        start = t0 + (i % 50) * 400  # 50 slots, chunks one after another in each
        attempts = 2 if i % interrupted_every == 0 else 1
        done_at = start
        for a in range(1, attempts + 1):
            killed = a < attempts
            launched = done_at
            ready = launched + 60
            records_in_life = per_chunk // 2 if killed else per_chunk
            seconds = records_in_life / rate
            life = History()
            life.add("start", launched + 20, pid=1000 + i)
            life.add("ready", ready)
            commits = max(1, int(seconds / commit_seconds))
            for k in range(commits):
                t = ready + (k + 1) * commit_seconds
                life.commit(t, t - commit_seconds, records_in_life // commits, 0, 40 * records_in_life // commits,
                            30 * records_in_life // commits, (0, base + (k + 1) * chunk_bytes // (2 * commits)))
                if k % 6 == 0:
                    life.add("beat", t + 1, answered=(k + 1) * records_in_life // commits + 7,
                             committed=(k + 1) * records_in_life // commits, held=2)
            end = ready + commits * commit_seconds
            if not killed:
                life.add("end", end, outcome="done", code=0)
            body = life.to_bytes()
            put(layout.history(c, a, 0), body)
            counts["history_bytes"] += len(body)
            counts["lives"] += 1
            record = AttemptRecord(c, a, "local", job_name(RUN, c, a), launched_at=launched, job_id=str(i), started_at=launched,
                                   state="FAILED" if killed else "DONE", ended_at=end + 2,
                                   reason="worker killed by signal 9" if killed else None, price_per_hour=0.35,
                                   on_demand_per_hour=1.0, price_source="--price-per-hour", resources={"cloud": "local"})
            put(layout.attempt_record(c, a), record.to_json())
            counts["attempts"] += 1
            done_at = end + 5
        step = chunk_bytes // 4
        for p in range(4):
            first, last = base + p * step, base + (p + 1) * step
            n = step // len(line)
            lines = []
            for r in range(n):
                pos = (0, first + r * len(line))
                lines.append(error_line(RUN, pos, "r", "invalid_request", "temperature must be >= 0") if r % 50 == 0
                             else json.dumps({"id": f"batch_req_{RUN}_0_{pos[1]}", "custom_id": "r",
                                              "response": {"status_code": 200, "body": {"choices": [{"text": "x"}]}},
                                              "error": None}).encode() + b"\n")
            errors = (n + 49) // 50
            put(layout.part(c, PartName((0, first), (0, last), attempts, p, n, errors)), b"".join(lines))
            counts["parts"] += 1
        errors = 4 * ((step // len(line) + 49) // 50)
        put(layout.done_marker(c), SuccessMarker(c, attempts, per_chunk, 0, per_chunk - errors, errors, 0, 0, 0, 1.0,
                                                 "2026-12-03T12:00:00+00:00", error_codes={"invalid_request": errors},
                                                 units=chunk_bytes).to_json())
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--interrupted", type=int, default=10, help="every N-th chunk was killed once")
    ap.add_argument("--commit-seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = print_machine()
    root = Path(tempfile.mkdtemp(prefix="bench-report-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        counts = synthesize(root, args.chunks, args.records, args.interrupted, args.commit_seconds)
        print(f"synthetic finished run: {args.chunks} chunks, {counts['attempts']} attempts, {counts['lives']} worker lives "
              f"({counts['history_bytes'] / 1e6:.1f} MB of history), {counts['parts']} parts "
              f"(written in {time.perf_counter() - t0:.0f}s)", flush=True)
        out = root / "report.html"
        cmd = [PYTHON, "-m", "launcher.cli", "report", RUN, "--store", str(root / "runs"), "-o", str(out)]
        env = {**os.environ, "COLUMNS": "200"}
        runs = [run_measured(cmd, env=env) for _ in range(args.repeats)]
        size = out.stat().st_size
        html = out.read_text()
        chart_js = (Path(__file__).resolve().parents[1] / "chunkpilot" / "control" / "report" / "vendor" / "chart.umd.min.js").stat().st_size
        start = html.index('id="report-data">') + len('id="report-data">')
        data = html[start:].split("</script>", 1)[0]
        data_bytes = len(data.encode())
        facts = json.loads(data)
        print("page data: " + ", ".join(f"{k} {len(v) if isinstance(v, (list, dict)) else v}" for k, v in facts.items()
                                        if isinstance(v, (list, dict))))
        secs = [r["wall_s"] for r in runs]
        rss = [r["peak_rss_mb"] for r in runs]
        rows = [[f"{args.chunks:,}", counts["attempts"], counts["lives"], f"{median(secs):.2f} ({spread(secs)})",
                 f"{median(rss):.0f}", f"{size / 1e6:.2f}", f"{chart_js / 1e6:.2f}", f"{data_bytes / 1e6:.2f}"]]
        print()
        print(table(["chunks", "attempts", "worker lives", "report s (min–max)", "peak RSS MB", "page MB",
                     "of which Chart.js MB", "of which run data MB"], rows))
        print(f"medians of {args.repeats} runs of the whole command, start-up included")
        write_json(args.json, {"benchmark": "report", "machine": info, "args": vars(args), "counts": counts,
                               "seconds": secs, "peak_rss_mb": rss, "page_bytes": size, "chart_js_bytes": chart_js,
                               "data_bytes": data_bytes})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
