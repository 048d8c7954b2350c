"""Benchmark 4 — collect: merging committed parts into one file vs ``cat`` of the same parts.

Synthesizes a run store with N output records in valid part files (names from
``PartName``, lines made by ``chunkpilot.output.ok_line``/``error_line``, 256 records per
part as the worker commits them, a ``_SUCCESS`` marker per chunk, ~0.1% of records
sharing a custom_id and ~1% error lines), then times, interleaved (collect, cat; cat, collect; ...):

* ``launcher collect RUN --store STORE -o OUT`` — the user's command, start-up included;
* ``cat <the same part files, in the same order> > OUT``.

Before each timed run the previous outputs are deleted and dirty pages written back
(``sync``), untimed, so neither contender pays for the other's writes. Both outputs
are byte-compared once. Peak RSS is each child's own (wait4).
Run with two sizes to show that collect's memory does not grow with the record count:

    python benchmarks/bench_collect.py --records 1000000 4000000 --repeats 5
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import shutil
import sys
import time
from array import array
from pathlib import Path

from _util import MB, PYTHON, median, print_machine, run_measured, scratch_dir, spread, table, write_json

from chunkpilot.layout import PartName
from chunkpilot.output import error_line, ok_line
from chunkpilot.requests import Request, Result
from chunkpilot.spec import ChunkSummary, InputPin, RunSpec, SuccessMarker, custom_id_hash, encode_hashes

RUN = "bench-collect"
STRIDE = 100  # bytes of (imaginary) input per record: positions only need to be increasing
WORDS = ("the a of to and in is it you that he was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look").split()


def _ok_line_maker(run: str):
    """A fast equivalent of ``chunkpilot.output.ok_line`` for plain-ASCII ids and texts (checked against it)."""
    model, revision = "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf-sha256:b179c9523d0e"

    def fast(key, custom_id: str, text: str, completion_tokens: int, created: int) -> bytes:
        rid = f"{run}-{key[0]}-{key[1]}"
        return (f'{{"id": "batch_req_{run}_{key[0]}_{key[1]}", "custom_id": "{custom_id}", "response": {{"status_code": 200, '
                f'"request_id": "{rid}", "body": {{"id": "chatcmpl-{rid}", "object": "chat.completion", "created": {created}, '
                f'"model": "{model}", "model_revision": "{revision}", "choices": [{{"index": 0, "message": {{"role": "assistant", '
                f'"content": "{text}"}}, "finish_reason": "stop"}}], "usage": {{"prompt_tokens": 30, "completion_tokens": '
                f'{completion_tokens}, "total_tokens": {30 + completion_tokens}}}}}}}, "error": null}}\n').encode()

    def real(key, custom_id: str, text: str, completion_tokens: int) -> bytes:
        req = Request(key, custom_id, "chat", {"max_tokens": 64}, messages=({"role": "user", "content": "hi"},))
        comp = Result(f"{key[0]}:{key[1]}", text=text, finish_reason="stop", prompt_tokens=30, completion_tokens=completion_tokens)
        return ok_line(run, req, comp, model, revision)

    sample = real((0, 12345), "req-1", "hello there world", 3)
    created = json.loads(sample)["response"]["body"]["created"]
    assert fast((0, 12345), "req-1", "hello there world", 3, created) == sample, "the fast line maker drifted from ok_line"
    return lambda key, custom_id, text, n: fast(key, custom_id, text, n, created)


def synthesize(root: Path, records: int, per_chunk: int, per_part: int, dup_every: int, err_every: int,
               words: tuple[int, int] = (5, 60), seed: int = 0) -> tuple[Path, list[Path]]:
    """Write a run store with ``records`` output records; returns (store, part paths in collect order)."""
    rng = random.Random(seed)
    make_ok = _ok_line_maker(RUN)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(words[0], words[1]))) for _ in range(4096)]
    store = root / "store"
    run = store / RUN
    chunks = (records + per_chunk - 1) // per_chunk
    width = max(4, len(str(chunks - 1)))
    summaries, parts_in_order = [], []
    i = 0
    for c in range(chunks):
        chunk = f"{c:0{width}d}"
        n_chunk = min(per_chunk, records - i)
        summaries.append(ChunkSummary(chunk, n_chunk * STRIDE))
        out = run / "out" / chunk
        out.mkdir(parents=True)
        seq, ok, errors = 0, 0, 0
        hashes = array("Q")  # the worker's digest of every record's custom_id, in input order
        for start in range(0, n_chunk, per_part):
            n = min(per_part, n_chunk - start)
            lines, part_errors = [], 0
            for j in range(n):
                k = i + start + j
                key = (0, k * STRIDE)
                custom_id = f"req-{k // dup_every * dup_every}" if dup_every and k % dup_every == 1 else f"req-{k}"
                hashes.append(custom_id_hash(custom_id))
                if err_every and k % err_every == 7:
                    lines.append(error_line(RUN, key, custom_id, "invalid_json", "line is not valid JSON: Expecting value at column 1"))
                    part_errors += 1
                    continue
                text = texts[(k * 2654435761) % len(texts)]
                lines.append(make_ok(key, custom_id, text, text.count(" ") + 1))
                ok += 1
            errors += part_errors
            name = PartName((0, (i + start) * STRIDE), (0, (i + start + n) * STRIDE), 1, seq, n, part_errors)
            path = out / name.filename
            path.write_bytes(b"".join(lines))
            parts_in_order.append(path)
            seq += 1
        marker = SuccessMarker(chunk, 1, n_chunk, 0, ok, errors, 0, 30 * ok, 0, 1.0, "2025-01-01T00:00:00+00:00",
                               encode_hashes(hashes), units=n_chunk * STRIDE)
        (out / "_SUCCESS").write_bytes(marker.to_json())
        i += n_chunk
    spec = RunSpec(
        run_id=RUN, created_at="2025-01-01T00:00:00+00:00",
        inputs=(InputPin(str(root / "input.jsonl"), records * STRIDE, "synthetic"),),
        chunks=tuple(summaries), engine="echo", model="echo", model_revision="echo-1",
        sampling={"max_tokens": 64, "temperature": 0.0}, backend="local", use_spot=None,
        max_attempts=3, workers=1, chunkpilot_version="bench",
    )
    (run / "run.json").write_bytes(spec.to_json())
    return store, parts_in_order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, nargs="+", default=[1_000_000, 4_000_000], help="output records per synthetic run (several sizes: memory scaling)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--per-chunk", type=int, default=10_000, help="records per chunk")
    ap.add_argument("--per-part", type=int, default=256, help="records per part (the worker's default commit_records)")
    ap.add_argument("--dup-every", type=int, default=1000, help="one record in N reuses an earlier custom_id (0: none)")
    ap.add_argument("--err-every", type=int, default=100, help="one record in N is an error line (0: none)")
    ap.add_argument("--words", type=int, nargs=2, default=(5, 60), metavar=("MIN", "MAX"),
                    help="completion length in words (default 5 60: ~640-byte lines, like benchmark 1's SmolLM2 outputs)")
    ap.add_argument("--workdir", default=None, help="where the synthetic stores go (default: the system temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic files")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    info = print_machine()
    launcher = str(Path(PYTHON).with_name("launcher"))
    results = []
    for n in args.records:
        root = scratch_dir(args.workdir, f"bench-collect-{n}-")
        try:
            t0 = time.perf_counter()
            store, parts = synthesize(root, n, args.per_chunk, args.per_part, args.dup_every, args.err_every, tuple(args.words))
            size = sum(p.stat().st_size for p in parts)
            print(f"\n{n:,} records: {len(parts):,} parts, {size / MB:,.0f} MB (synthesized in {time.perf_counter() - t0:.0f}s)", flush=True)
            list_file = root / "parts.txt"
            list_file.write_text("\n".join(str(p) for p in parts) + "\n")
            out_collect, out_cat = root / "collect.jsonl", root / "cat.jsonl"
            collect_cmd = [launcher, "collect", RUN, "--store", str(store), "-o", str(out_collect)]
            # xargs keeps the argument list within ARG_MAX; the parts are cat'ed in collect's order.
            cat_cmd = ["sh", "-c", f'xargs -d "\\n" cat < "{list_file}" > "{out_cat}"']
            runs = {"collect": [], "cat": []}
            env = {**os.environ, "COLUMNS": "400"}  # collect's report on one line
            report = ""
            for cmd in (collect_cmd, cat_cmd):  # untimed warm-up: on a fresh VM the first runs were 2-8x slower
                run_measured(cmd, env=env)
            for r in range(args.repeats):
                order = (("collect", collect_cmd), ("cat", cat_cmd))
                for name, cmd in order if r % 2 == 0 else order[::-1]:  # A B, B A, ...: no contender always goes first
                    for old in (out_collect, out_cat):  # neither pays for freeing the previous output
                        old.unlink(missing_ok=True)
                    os.sync()  # nor for writing back the previous run's dirty pages
                    m = run_measured(cmd, env=env)
                    runs[name].append(m)
                    if name == "collect":
                        report = m["stderr"].strip()
                print(f"  repeat {r + 1}: collect {runs['collect'][-1]['wall_s']:.2f}s, cat {runs['cat'][-1]['wall_s']:.2f}s", flush=True)
            for cmd in (cat_cmd, collect_cmd):  # untimed: both outputs, for the comparison
                run_measured(cmd, env=env)
            same = filecmp.cmp(out_collect, out_cat, shallow=False)
            print(f"  collect said: {report.splitlines()[0] if report else '?'}")
            print(f"  {'; '.join(report.splitlines()[1:])}")
            print(f"  output identical to cat's: {same}")
            med = {k: median([m["wall_s"] for m in v]) for k, v in runs.items()}
            rss = {k: median([m["peak_rss_mb"] for m in v]) for k, v in runs.items()}
            results.append({
                "records": n, "parts": len(parts), "mb": size / MB, "identical": same,
                "collect_s": med["collect"], "cat_s": med["cat"],
                "collect_runs": [m["wall_s"] for m in runs["collect"]], "cat_runs": [m["wall_s"] for m in runs["cat"]],
                "collect_mb_s": size / MB / med["collect"], "cat_mb_s": size / MB / med["cat"],
                "ratio": med["cat"] / med["collect"],
                "collect_rss_mb": rss["collect"], "cat_rss_mb": rss["cat"],
                "collect_cpu_s": median([m["cpu_s"] for m in runs["collect"]]),
                "user_s": {k: median([m["user_s"] for m in v]) for k, v in runs.items()},
                "sys_s": {k: median([m["sys_s"] for m in v]) for k, v in runs.items()},
                "report": report,
            })
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)

    print()
    print(table(
        ["records", "MB", "collect s (min–max)", "cat s (min–max)", "collect MB/s", "cat MB/s", "speed vs cat",
         "CPU user / kernel s: collect", "cat", "collect peak RSS MB", "cat peak RSS MB"],
        [[r["records"], r["mb"], f"{r['collect_s']:.2f} ({spread(r['collect_runs'])})", f"{r['cat_s']:.2f} ({spread(r['cat_runs'])})",
          r["collect_mb_s"], r["cat_mb_s"], f"{r['ratio']:.2f}×",
          f"{r['user_s']['collect']:.2f} / {r['sys_s']['collect']:.2f}", f"{r['user_s']['cat']:.2f} / {r['sys_s']['cat']:.2f}",
          r["collect_rss_mb"], r["cat_rss_mb"]] for r in results],
    ))
    print(f"medians of {args.repeats} interleaved runs; 'speed vs cat' = cat time / collect time (target ≥ 0.5×)")
    write_json(args.json, {"benchmark": "collect", "machine": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    sys.exit(main())
