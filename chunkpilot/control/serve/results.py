"""A finished run's answers as a batch's two result files, split exactly as OpenAI splits them.

``collect`` merges the run (input order, each record once, partial when the batch was cancelled
or expired); each line then goes to the output file when its request was answered (a response
with status 200) and to the error file otherwise. Streamed line by line through local temporary
files, then stored with ``ServeState.add_file``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

from chunkpilot.control.collect import collect
from chunkpilot.control.runs import OpenRun
from chunkpilot.control.serve.objects import OUTPUT_PURPOSE, BatchRecord
from chunkpilot.control.serve.state import ServeState


def is_error_line(line: bytes) -> bool:
    """Whether an output line belongs in the error file: an error object, or no 2xx response."""
    obj = json.loads(line)
    if obj.get("error") is not None:
        return True
    status = (obj.get("response") or {}).get("status_code")
    return not isinstance(status, int) or not 200 <= status < 300


@dataclass(frozen=True)
class Results:
    output_file_id: str | None  # None: no request was answered
    error_file_id: str | None  # None: no request failed
    completed: int
    failed: int


def split_lines(merged: str, output: str, errors: str) -> tuple[int, int]:
    """Copy each line of ``merged`` into ``output`` or ``errors``; returns (answered, failed)."""
    ok = failed = 0
    with open(merged, "rb") as src, open(output, "wb") as out, open(errors, "wb") as err:
        for line in src:
            if not line.strip():
                continue
            if is_error_line(line):
                err.write(line)
                failed += 1
            else:
                out.write(line)
                ok += 1
    return ok, failed


def store_results(state: ServeState, run: OpenRun, batch: BatchRecord) -> Results:
    """Collect ``run`` and store its result files under the ids ``batch`` reserved (``pending_*``)."""
    with tempfile.TemporaryDirectory(prefix="chunkpilot-serve-") as folder:
        merged, output, errors = (os.path.join(folder, n) for n in ("merged.jsonl", "output.jsonl", "errors.jsonl"))
        collect(run, merged, allow_partial=True, fmt="openai")
        ok, failed = split_lines(merged, output, errors)
        output_id = error_id = None
        if ok:
            output_id = state.add_file(batch.tenant, output, os.path.getsize(output), f"{batch.id}_output.jsonl",
                                       OUTPUT_PURPOSE, batch.pending_output).id
        if failed:
            error_id = state.add_file(batch.tenant, errors, os.path.getsize(errors), f"{batch.id}_error.jsonl",
                                      OUTPUT_PURPOSE, batch.pending_error).id
    return Results(output_id, error_id, ok, failed)
