"""The same job done with pyarrow alone, everything in memory: read every part's JSON lines with
pyarrow's reader, the input with ``pq.read_table``, put each row's answer beside it, write Parquet.

    python benchmarks/_parquet_baseline.py RUN_FOLDER INPUT.parquet OUT.parquet

No resume bookkeeping, no verification, no duplicates from zombies handled: parts are taken in
name order, one per chunk interval, as a careful user's script would on a clean run.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq


def main(run: str, source: str, out: str) -> None:
    parts = sorted(p for p in Path(run, "out").glob("*/*.jsonl"))
    data = b"".join(p.read_bytes() for p in parts)
    lines = pj.read_json(io.BytesIO(data))
    body = pc.struct_field(lines["response"], ["body"])
    first = pc.list_element(pc.struct_field(body, ["choices"]), 0)
    answers = pc.struct_field(first, ["text"]) if "text" in first.type.names else pc.struct_field(first, ["message", "content"])
    table = pq.read_table(source)
    table = table.append_column("response", answers).append_column("response_error", lines["error"])
    pq.write_table(table, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
