"""What collect checks before it writes a byte: the inputs are still those the run answered, and
the output is neither one of them nor inside the run's own folder in the store.

Answers are joined to records by position; an input edited after submit would pair its records
with other records' answers (or drop an appended line without a word), so a changed input is
refused — whatever the format, ``--allow-partial`` or not. The pin (size and etag) is checked
here for every input; a chunk's content digest is checked where collect reads its records back
(``check_digest``), since only then are the bytes at hand.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from chunkpilot.errors import InputError, OutputError
from chunkpilot.inputs import REMOVED, pin_change
from chunkpilot.spec import ChunkManifest, RunSpec

HEAD_CONCURRENCY = 16  # an S3 HEAD is a round trip: many inputs are asked side by side


def _advice(run_id: str) -> str:
    return (f"the answers of run {run_id} belong to the input as it was submitted: restore it, "
            "or submit a new run for the new input")


def check_inputs(spec: RunSpec, reads_inputs: bool) -> list[str]:
    """InputError naming every input whose size or etag differs from its pin, or that is gone when
    the output needs it (``reads_inputs``: records and Parquet read every record back). Returns the
    inputs that are gone but not needed (OpenAI Batch lines are the answers alone), for a note."""
    with ThreadPoolExecutor(min(HEAD_CONCURRENCY, max(1, len(spec.inputs))), thread_name_prefix="collect-pin") as pool:
        changes = [(pin.uri, change) for pin, change in zip(spec.inputs, pool.map(pin_change, spec.inputs)) if change]
    removed = [uri for uri, change in changes if change == REMOVED]
    if not reads_inputs:
        changes = [(uri, change) for uri, change in changes if change != REMOVED]
    if not changes:
        return removed
    listed = "; ".join(f"{uri}: {change}" for uri, change in changes[:3])
    more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
    raise InputError(f"input changed after the run was submitted — {listed}{more}. {_advice(spec.run_id)}")


def check_ranges(spec: RunSpec, manifest: ChunkManifest) -> None:
    """InputError if a chunk's ranges do not lie within the inputs as pinned (a manifest that is not this run's)."""
    for r in manifest.ranges:
        if not 0 <= r.source < len(spec.inputs) or not 0 <= r.start <= r.end <= spec.inputs[r.source].length:
            raise InputError(f"chunk {manifest.chunk}'s range {r.source}:[{r.start}, {r.end}) lies outside the run's "
                             f"inputs: its manifest does not belong to run {spec.run_id}")


def check_digest(spec: RunSpec, manifest: ChunkManifest, recorded: str, read: str) -> None:
    """InputError if the chunk's input bytes read now (``read``) are not those its worker answered
    (``recorded``; "" where none was recorded: nothing to compare)."""
    if not recorded or not read or recorded == read:
        return
    where = ", ".join(f"{spec.inputs[r.source].uri} bytes {r.start}-{r.end}" for r in manifest.ranges)
    raise InputError(f"input changed after the run was submitted — {where} (chunk {manifest.chunk}) no longer hold the "
                     f"records its worker answered, though size and modification time are unchanged. {_advice(spec.run_id)}")


def check_output(spec: RunSpec, run_uri: str, output: str) -> None:
    """OutputError if writing ``output`` would replace one of the run's inputs or land in its folder in the store."""
    if output.startswith("s3://"):
        target = output
        same = [pin.uri for pin in spec.inputs if pin.uri == target]
        inside = run_uri.startswith("s3://") and target.startswith(run_uri.rstrip("/") + "/")
    else:
        target = os.path.realpath(os.path.expanduser(output))
        same = [pin.uri for pin in spec.inputs if not pin.uri.startswith("s3://") and _same_file(target, pin.uri)]
        inside = not run_uri.startswith("s3://") and target.startswith(os.path.realpath(run_uri) + os.sep)
    if same:
        raise OutputError(f"-o {output} is an input of run {spec.run_id} ({same[0]}): collect never writes over its "
                          "input; name another output file")
    if inside:
        raise OutputError(f"-o {output} is inside run {spec.run_id}'s folder in the store ({run_uri}), which only "
                          "chunkpilot writes: name a file outside it")


def _same_file(target: str, input_path: str) -> bool:
    """The same file: by resolved path, or by inode where both exist (a hard link)."""
    if target == os.path.realpath(input_path):
        return True
    try:
        return os.path.samefile(target, input_path)
    except OSError:
        return False
