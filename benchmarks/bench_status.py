"""Benchmark 5 — tracking cost: one ``status`` look and one ``watch`` cycle of a 1,000-chunk run on S3.

A real S3-protocol server (moto, on loopback) behind a request-counting proxy
(tests/s3server.py's FaultProxy with no faults) holds a synthetic run in mid-flight:
60% of chunks done (4 parts + _SUCCESS each), 40% running (2 parts, a held object,
one in five on its second attempt after a killed first), a heartbeat each, every attempt recorded
under jobs/ and every worker life's history under history/, and the attempt ledger a watcher
leaves (written by one real watch cycle before the clock starts). Measured,
interleaved, straight to the server (the proxy shares this process's GIL, so
requests are counted in one more pass through it):

* status: ``observe`` + ``decide`` + ``summarize`` (what ``launcher status`` does);
* watch: one ``reconcile_once`` + ``look`` (what ``launcher watch`` does per cycle) with a
  backend that answers every poll "RUNNING" and launches nothing, keeping what it learnt;
* per-chunk polling: the obvious alternative (and the seed's ``.succeed`` check) —
  HEAD each chunk's done marker, GET the heartbeat and attempt record of each
  chunk not done.

Also the whole ``launcher status RUN --store s3://…`` command once (start-up included).

    python benchmarks/bench_status.py --chunks 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from _util import PYTHON, admin_client, median, print_machine, run_measured, s3_server, spread, table, write_json

from chunkpilot import layout
from chunkpilot.history import History
from chunkpilot.layout import PartName
from chunkpilot.names import chunk_id, job_name
from chunkpilot.spec import (
    AttemptRecord,
    ChunkManifest,
    ChunkSummary,
    InputPin,
    Progress,
    RunSpec,
    SourceRange,
    SuccessMarker,
)
from chunkpilot.control.backends.base import JobState, JobStatus

BUCKET, RUN = "bench-status", "bench-status-run"
CHUNK_BYTES = 1_000_000


class RunningBackend:
    """Every polled job is RUNNING; nothing is launched or cancelled (a steady-state watch cycle)."""

    name = "local"

    def launch(self, requests):
        return [None for _ in requests]

    def poll(self, run_id, names):
        return {n: JobState(JobStatus.RUNNING) for n in names}

    def cancel(self, run_id, names):
        pass


def synthesize(client, chunks: int, done_share: float) -> dict[str, int]:
    client.create_bucket(Bucket=BUCKET)
    ids = [chunk_id(i, chunks) for i in range(chunks)]
    spec = RunSpec(run_id=RUN, created_at="2025-01-01T00:00:00+00:00",
                   inputs=(InputPin(f"s3://{BUCKET}/in.jsonl", chunks * CHUNK_BYTES, "etag"),),
                   chunks=tuple(ChunkSummary(c, CHUNK_BYTES) for c in ids), engine="echo", model="echo",
                   model_revision="echo-1", sampling={"max_tokens": 16, "temperature": 0.0}, backend="local",
                   use_spot=None, max_attempts=3, workers=1, chunkpilot_version="bench")
    objects: dict[str, bytes] = {f"runs/{RUN}/run.json": spec.to_json()}
    counts = {"parts": 0, "done": 0, "running": 0}
    now = time.time()
    for i, c in enumerate(ids):
        base = i * CHUNK_BYTES
        objects[f"runs/{RUN}/chunks/{c}.json"] = ChunkManifest(c, (SourceRange(0, base, base + CHUNK_BYTES),)).to_json()
        done = i < chunks * done_share
        attempts = 2 if (not done and i % 5 == 0) else 1
        for a in range(1, attempts + 1):
            rec = AttemptRecord(c, a, "local", job_name(RUN, c, a), launched_at=now - 600, job_id=str(i * 10 + a), state="LAUNCHED",
                                started_at=now - 590, price_per_hour=0.35, price_source="--price-per-hour")
            if a < attempts:  # killed: the watcher saw it end
                rec = rec.with_(state="FAILED", ended_at=now - 400, reason="worker killed by signal 9")
            if done:
                rec = rec.with_(state="DONE", ended_at=now - 60)
            objects[f"runs/{RUN}/{layout.attempt_record(c, a)}"] = rec.to_json()
            life = History()
            life.add("start", now - 590, pid=1000 + i)
            life.add("ready", now - 580)
            for k in range(8):
                life.commit(now - 570 + 10 * k, now - 580 + 10 * k, 128, 1, 4000, 2000, (0, base + k * 1000))
            life.add("beat", now - 490, answered=1100, committed=1024, held=8)
            if done:
                life.add("end", now - 60, outcome="done", code=0)
            objects[f"runs/{RUN}/{layout.history(c, a, 0)}"] = life.to_bytes()
        n_parts = 4 if done else 2
        step = CHUNK_BYTES // 4
        for p in range(n_parts):
            part = PartName((0, base + p * step), (0, base + (p + 1) * step), attempts, p, 256)
            objects[f"runs/{RUN}/{layout.part(c, part)}"] = b'{"id": "x"}\n' * 4  # contents are never read
            counts["parts"] += 1
        objects[f"runs/{RUN}/{layout.progress(c)}"] = Progress(
            c, attempts, "done" if done else "running", records_done=n_parts * 256, units_done=n_parts * step,
            units_total=CHUNK_BYTES, tokens_per_s=150.0, updated_at=now).to_json()
        if done:
            objects[f"runs/{RUN}/{layout.done_marker(c)}"] = SuccessMarker(
                c, attempts, 1024, 0, 1024, 0, 0, 0, 0, 1.0, "2025-01-01T00:00:00+00:00", units=CHUNK_BYTES).to_json()
            counts["done"] += 1
        else:  # answers finished behind a slower one: not listed by a look, but in the bucket
            objects[f"runs/{RUN}/{layout.held(c, attempts)}"] = b'{"id": "x"}\n' * 8
            counts["running"] += 1
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), objects.items()))
    counts["objects"] = len(objects)
    return counts


def counted(proxy, action):
    """Run ``action`` through the counting proxy: the requests it made, by method."""
    before = dict(proxy.requests)
    action()
    after = dict(proxy.requests)
    return {m: after.get(m, 0) - before.get(m, 0) for m in after if after.get(m, 0) - before.get(m, 0)}


def timed_direct(direct: str, action):
    """Run ``action`` straight to the server (the proxy runs in this process and would share
    its GIL): (seconds, CPU seconds of this process, result)."""
    saved = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = direct
    try:
        started, cpu = time.perf_counter(), time.process_time()
        result = action()
        return time.perf_counter() - started, time.process_time() - cpu, result
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--done", type=float, default=0.6, help="share of chunks already done")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = print_machine()

    from chunkpilot.control.attempts import AttemptBook
    from chunkpilot.control.observe import observe
    from chunkpilot.control.reconcile import decide
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.watch import LookCache, WatchOptions, look, policy_for, reconcile_once

    with s3_server() as (proxy, direct):
        t0 = time.perf_counter()
        counts = synthesize(admin_client(direct), args.chunks, args.done)
        print(f"synthetic run: {args.chunks} chunks ({counts['done']} done, {counts['running']} running), "
              f"{counts['parts']} parts, {counts['objects']} objects (written in {time.perf_counter() - t0:.0f}s)", flush=True)
        store_uri = f"s3://{BUCKET}/runs"
        run = open_run(store_uri, RUN)
        backend = RunningBackend()

        def status_look():
            observed = observe(run.run_store, run.spec, backend)
            decision = decide([o.view() for o in observed.values()], policy_for(run, WatchOptions()), time.time())
            return look(run, decision, observed)

        known_done, unfinished = set(), set()
        cache = LookCache(book=AttemptBook(run.run_store, run.spec))

        def watch_cycle():  # a watcher's steady state: what it learnt in earlier cycles, it keeps
            decision, observed = reconcile_once(run, backend, WatchOptions(), known_done, None, unfinished, cache.book)
            report = look(run, decision, observed, cache)
            cache.book.flush()
            return report

        timed_direct(direct, watch_cycle)  # the watcher that has been driving the run...
        cache.book.flush(force=True)  # ...and the ledger it leaves

        def per_chunk_poll():
            """HEAD each done marker; GET heartbeat and attempt record of each chunk not done."""
            from chunkpilot.errors import NotFoundError

            store, states = run.run_store, {}
            for c in run.spec.chunk_ids:
                try:
                    store.head(layout.done_marker(c))
                    states[c] = "DONE"
                    continue
                except NotFoundError:
                    pass
                Progress.from_json(store.get(layout.progress(c)))
                attempt = 1
                while True:  # the latest attempt record
                    try:
                        store.head(layout.attempt_record(c, attempt + 1))
                        attempt += 1
                    except NotFoundError:
                        break
                AttemptRecord.from_json(store.get(layout.attempt_record(c, attempt)))
                states[c] = "RUNNING"
            return states

        def raw_listings():
            """The floor under any look at the store: the four listings, parsed by botocore, nothing else."""
            for prefix in (layout.JOBS, layout.OUTPUTS, layout.PROGRESS, layout.HISTORY):
                for _ in run.run_store.list(prefix):
                    pass

        contenders = {"status (observe+summarize)": status_look, "watch cycle (reconcile_once)": watch_cycle,
                      "the 4 listings alone (boto3)": raw_listings, "per-chunk polling": per_chunk_poll}
        runs: dict[str, list] = {k: [] for k in contenders}
        for _ in range(args.repeats):
            for name, action in contenders.items():
                runs[name].append(timed_direct(direct, action))
        requests = {name: counted(proxy, action) for name, action in contenders.items()}
        check = runs["status (observe+summarize)"][-1][2].totals
        print(f"status totals: {check['states']}, {check['records_done']} records done")

        env = {**os.environ, "COLUMNS": "200", "AWS_ENDPOINT_URL": direct}
        cli = [PYTHON, "-m", "launcher.cli", "status", RUN, "--store", store_uri, "--json"]
        cli_seconds = median([run_measured(cli, env=env)["wall_s"] for _ in range(args.repeats)])
        cli_requests = counted(proxy, lambda: run_measured(cli, env={**env, "AWS_ENDPOINT_URL": proxy.endpoint}))

    rows, results = [], {}
    base = median([s for s, _, _ in runs["per-chunk polling"]])
    for name, rs in runs.items():
        secs = [s for s, _, _ in rs]
        cpus = [c for _, c, _ in rs]
        reqs = requests[name]
        total = sum(reqs.values())
        results[name] = {"seconds": median(secs), "seconds_runs": secs, "client_cpu_s": median(cpus), "requests": reqs,
                         "requests_total": total}
        rows.append([name, f"{median(secs):.3f} ({spread(secs)})", f"{median(cpus):.2f}", total,
                     ", ".join(f"{m} {n}" for m, n in sorted(reqs.items())), f"{base / median(secs):.1f}×"])
    rows.append(["`launcher status --json` command, start-up included", f"{cli_seconds:.2f}", "-", sum(cli_requests.values()),
                 ", ".join(f"{m} {n}" for m, n in sorted(cli_requests.items())), "-"])
    results["cli"] = {"seconds": cli_seconds, "requests": cli_requests}
    print()
    print(table(["per cycle", "seconds (min–max)", "client CPU s", "requests", "by method", "faster than per-chunk polling"], rows))
    print(f"medians of {args.repeats} interleaved runs straight to the server; requests counted in one more run through the "
          "proxy; S3 listings return up to 1,000 keys per request")
    write_json(args.json, {"benchmark": "status", "machine": info, "args": vars(args), "store": counts, "results": results})


if __name__ == "__main__":
    sys.exit(main())
