"""One planning run in its own process, so its peak RSS and wall time are its own.

    python benchmarks/_plan_child.py planner INPUT STORE CHUNKS     # chunkpilot: plan_run + write_run
    python benchmarks/_plan_child.py seed INPUT OUTDIR CHUNKS       # the seed: read all lines, write copies

Prints one JSON line: seconds, bytes read by the process's own accounting and by
the kernel's (``rchar`` of /proc/self/io, local files only), bytes written, chunks.
Imports happen before the clock starts, for both.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _io() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            k, v = line.split(":")
            out[k] = int(v)
    except OSError:
        pass
    return out


def planner(source: str, store: str, chunks: int) -> dict:
    from chunkpilot.control.submit import SubmitOptions, plan_run, write_run

    options = SubmitOptions(inputs=(source,), chunks=chunks, store_uri=store, engine="echo", run_name="plan-bench")
    before, started = _io(), time.perf_counter()
    plan = plan_run(options)
    planned = time.perf_counter()
    write_run(plan, store)
    seconds, after = time.perf_counter() - started, _io()
    return {"seconds": seconds, "plan_seconds": planned - started, "write_seconds": seconds - (planned - started),
            "bytes_read": plan.probe_bytes, "rchar": after.get("rchar", 0) - before.get("rchar", 0),
            "chunks": len(plan.manifests), "input_bytes": sum(p.size for p in plan.spec.inputs)}


def seed(source: str, outdir: str, chunks: int) -> dict:
    """The seed's "Scale out to Multiple Nodes": every line in memory, chunked by count, each chunk written out.

    As written it drops the last ``len % NUM_CHUNKS`` lines (``chunk_size = len // n``);
    here the last chunk takes them, so every record is kept.
    """
    before, started = _io(), time.perf_counter()
    if source.startswith("s3://"):
        from chunkpilot.store import open_store, split_object_uri

        store, key = split_object_uri(source)
        data_paths = store.get(key).decode().splitlines(keepends=True)
        out_store = open_store(outdir)
    else:
        with open(source) as f:
            data_paths = f.readlines()
        out_store = None
        os.makedirs(outdir, exist_ok=True)
    chunk_size = len(data_paths) // chunks
    data_chunks = []
    for i in range(chunks):
        end = (i + 1) * chunk_size if i < chunks - 1 else len(data_paths)
        data_chunks.append(data_paths[i * chunk_size : end])
    written = 0
    for i, data_chunk in enumerate(data_chunks):
        body = "".join(data_chunk)
        written += len(body.encode()) if out_store is not None else len(body)
        if out_store is not None:
            out_store.put(f"chunks/{i}.txt", body.encode())
        else:
            with open(f"{outdir}/{i}.txt", "w") as f:
                f.write(body)
    seconds, after = time.perf_counter() - started, _io()
    size = sum(len(line) for line in data_paths)
    return {"seconds": seconds, "bytes_read": size, "rchar": after.get("rchar", 0) - before.get("rchar", 0),
            "bytes_written": written, "chunks": len(data_chunks), "input_bytes": size}


if __name__ == "__main__":
    which, source, dest, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if source.startswith("s3://") or dest.startswith("s3://"):
        import boto3  # noqa: F401

        import chunkpilot.store.s3  # noqa: F401 - boto3 imported before the clock starts
    import chunkpilot.control.submit  # noqa: F401
    result = (planner if which == "planner" else seed)(source, dest, n)
    print(json.dumps(result))
