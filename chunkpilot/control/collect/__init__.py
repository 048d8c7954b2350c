"""Merge a run's committed parts into one output, in input order, each record exactly once.

Collect verifies the output without reading it: the worker wrote what there is to check into
part names (interval, record and error-line counts) and into each chunk's done marker
(record count, a hash of every record's custom_id). Three pieces:

* ``merge``: the pure merge plan of a chunk from its parts' names (copy, keep some, drop);
* ``copy``: laying a chunk's parts into the output file by that plan;
* ``verify``: markers against what was written, and duplicate custom_ids from their hashes.

Checked first (``guard``): the inputs match their pins, and the output is neither an input nor
inside the run's folder. Then: every chunk is done (or ``allow_partial``); each chunk's records written equal its
marker's count and its number of custom_id hashes; each part copied has the size the listing
gave. Only chunks without a marker (``allow_partial``) have their lines read, to hash their
custom_ids here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

from chunkpilot import layout
from chunkpilot.chunks import run_chunk_ids, split_ends
from chunkpilot.committed import output_lines
from chunkpilot.errors import IncompleteRunError, OutputError, StoreError
from chunkpilot.prompts import PromptSpec
from chunkpilot.spec import SuccessMarker, encode_hashes
from chunkpilot.formats.compressed import strip_compression_suffix
from chunkpilot.store import Store, default_store_uri, split_object_uri
from chunkpilot.control.collect.copy import Copier, done_chunks, lay_out_chunk, parts_by_chunk
from chunkpilot.control.collect.duplicates import duplicate_custom_ids
from chunkpilot.control.collect.encode import encode, output_shape
from chunkpilot.control.collect.guard import check_inputs, check_output
from chunkpilot.control.collect.records import RecordsJsonWriter, json_value, merged_records, record_with_answer
from chunkpilot.control.collect.records import Tally as RecordsTally
from chunkpilot.control.collect.verify import custom_ids_at, read_markers
from chunkpilot.control.dupcount import CounterProcess
from chunkpilot.control.outfile import write_atomically
from chunkpilot.control.runs import RESUBMIT, OpenRun, exhausted_chunks, stopped_chunks, why_stopped


@dataclass
class CollectReport:
    records: int = 0
    ok: int = 0
    errors: int = 0
    skipped_blank: int = 0
    duplicates_dropped: int = 0  # records committed twice (zombies, resumes) written once
    duplicate_custom_ids: int = 0  # distinct custom_ids that appear on more than one record
    duplicate_examples: list[str] = field(default_factory=list)
    duplicate_example_records: list[int] = field(default_factory=list)  # record numbers (chunk << 32 | position)
    incomplete_chunks: list[str] = field(default_factory=list)
    mismatched_chunks: list[str] = field(default_factory=list)  # output count != done marker's count
    bytes: int = 0
    removed_inputs: list[str] = field(default_factory=list)  # gone since submit; the OpenAI format needs none
    chunk_offsets: list[int] = field(default_factory=list, repr=False)  # where each chunk starts in the output


FORMATS = ("openai", "records", "parquet")


def output_format(path: str, fmt: str | None) -> str:
    """The format asked for, or the one ``path`` names: Parquet for ``*.parquet``, else OpenAI Batch lines."""
    if fmt is not None:
        return fmt
    return "parquet" if path.lower().endswith((".parquet", ".parq")) else "openai"


def collect(run: OpenRun, path: str, allow_partial: bool = False, max_examples: int = 5, *,
            fmt: str | None = None, output_key: str | None = None) -> CollectReport:
    """Write the run's merged output to ``path``; refuse if a chunk is incomplete unless ``allow_partial``.

    ``fmt``: ``openai`` (OpenAI Batch output lines, copied from the parts), ``records`` (the
    input records with their answers as JSON Lines, ``chunkpilot.control.collect.records``) or ``parquet``
    (the same as Parquet, ``chunkpilot.control.collect.parquet``); None: by ``path``'s suffix. Written as
    ``chunkpilot.control.outfile`` writes: its folder created, whole or not at all, mode 0644 less umask.
    """
    check_output(run.spec, run.run_uri, path)
    table, compression = output_shape(path)
    if table is not None or compression is not None:
        return _collect_encoded(run, path, allow_partial, max_examples, fmt, output_key, table, compression)
    fmt = output_format(path, fmt)
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    # --allow-partial or not: answers of another input are no answers.
    removed = check_inputs(run.spec, reads_inputs=fmt != "openai")
    chunks, done, incomplete = chunks_to_collect(run, allow_partial)
    key = output_key or PromptSpec.from_dict(run.spec.prompt).output_key

    def write(fd: int) -> CollectReport:
        if fmt == "records":
            return _collect_records(run, chunks, done, fd, key, max_examples)
        if fmt == "parquet":
            return _collect_parquet(run, chunks, done, fd, key, max_examples)
        return _collect_into(run.run_store, chunks, done, fd, max_examples)

    report = write_atomically(path, write)
    report.incomplete_chunks = incomplete
    report.removed_inputs = removed
    if report.duplicate_example_records:
        mismatched = {chunks.index(c) for c in report.mismatched_chunks}  # positions there are not the marker's
        report.duplicate_examples = custom_ids_at(
            path, [r for r in report.duplicate_example_records if r >> 32 not in mismatched], report.chunk_offsets
        )
    return report


def chunks_to_collect(run: OpenRun, allow_partial: bool) -> tuple[list[str], set[str], list[str]]:
    """(the run's chunks, split remainders too, in the order a listing of out/ gives them; those done;
    those not done). IncompleteRunError, saying what would finish them, if some are not done and not
    ``allow_partial``."""
    chunks = run_chunk_ids(run.run_store, run.spec)
    done = done_chunks(run.run_store, set(chunks))
    incomplete = [c for c in chunks if c not in done]
    if incomplete and not allow_partial:
        raise IncompleteRunError(incomplete_message(run, chunks, incomplete))
    return chunks, done, incomplete


MISMATCHED = "output counts do not match the done markers; the output may be incomplete"


def check_counts(report: CollectReport) -> None:
    """IncompleteRunError if what was written does not match the done markers' counts (after
    ``collect`` has written it: the file is kept, for a person to look at)."""
    if report.mismatched_chunks:
        raise IncompleteRunError(MISMATCHED)


def collected_records(run: OpenRun, allow_partial: bool = False, *, fmt: str | None = None,
                      output_key: str | None = None) -> Iterator[dict[str, Any]]:
    """The records ``collect`` would write to a JSON Lines file, parsed, in input order, each once,
    streamed: one chunk's listing and one part's lines are read at a time.

    ``fmt``: ``openai`` (the default: OpenAI Batch output lines) or ``records`` (each input record
    with its answer, values as the JSON file holds them). The same checks as ``collect``, raised as
    the same errors: the inputs against their pins, every chunk done (or ``allow_partial``), and
    each done chunk's records counted against its marker (IncompleteRunError after that chunk's
    records were given). The duplicate custom_id count is ``collect``'s alone (it reports, never refuses).
    """
    fmt = fmt or "openai"
    if fmt not in ("openai", "records"):
        raise OutputError(f"unknown record format {fmt!r}: use openai or records (parquet is a file: give a path)")
    check_inputs(run.spec, reads_inputs=fmt != "openai")
    chunks, done, _ = chunks_to_collect(run, allow_partial)
    if fmt == "records":
        key = output_key or PromptSpec.from_dict(run.spec.prompt).output_key
        tally = RecordsTally()
        for row in merged_records(run.spec, run.run_store, done, tally):
            yield json.loads(json.dumps(record_with_answer(row, key), default=json_value))
        if tally.missing:
            raise IncompleteRunError(MISMATCHED)
        return
    ends = split_ends(run.run_store, chunks)
    for chunk, parts in parts_by_chunk(run.run_store, chunks):
        count = 0
        for _, obj in output_lines(run.run_store, parts, end=ends.get(chunk)):
            count += 1
            yield obj
        if chunk in done and count != _marked_records(run, chunk):
            raise IncompleteRunError(MISMATCHED)


def _marked_records(run: OpenRun, chunk: str) -> int:
    try:
        return SuccessMarker.from_json(run.run_store.get(layout.done_marker(chunk))).records
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{run.run_uri}/{layout.done_marker(chunk)} is not a done marker chunkpilot wrote: {exc}") from exc


def incomplete_message(run: OpenRun, chunks: list[str], incomplete: list[str]) -> str:
    """Why collect refuses a run with chunks not done, and what would finish them: ``launcher watch``
    only for chunks it can still finish, never for those a worker stopped for good."""
    stopped = stopped_chunks(run.run_store, incomplete)
    exhausted = exhausted_chunks(run.run_store, [c for c in incomplete if c not in stopped], run.spec, run.allowance())
    going = [c for c in incomplete if c not in stopped and c not in exhausted]
    where = "" if run.store_uri == default_store_uri() else f" --store {run.store_uri}"
    advice = []
    if going:
        advice.append(f"{len(going)} can still finish ({_listed(going)}): run `launcher watch {run.spec.run_id}{where}`")
    if exhausted:
        advice.append(f"{len(exhausted)} ran out of attempts ({_listed(list(exhausted))}): run `launcher watch "
                      f"{run.spec.run_id}{where} --max-attempts {max(exhausted.values()) + 1}` to give them more")
    if stopped:
        advice.append(f"{len(stopped)} stopped for good ({_listed(list(stopped))}; {why_stopped(stopped)}): "
                      f"`launcher watch` cannot finish them; {RESUBMIT.replace('nothing resumes it', 'nothing resumes them')}")
    return (f"{len(incomplete)} of {len(chunks)} chunk(s) are not done: {'; '.join(advice)}. "
            "Or pass --allow-partial to collect what is answered")


def _listed(chunks: list[str]) -> str:
    return ", ".join(chunks[:10]) + ("" if len(chunks) <= 10 else f" and {len(chunks) - 10} more")


def _collect_encoded(run: OpenRun, path: str, allow_partial: bool, max_examples: int, fmt: str | None,
                     output_key: str | None, table: str | None, compression: str | None) -> CollectReport:
    """``collect`` into JSON Lines in a temporary folder beside ``path``, then streamed into ``path``
    as the table and/or compression its name asks for (``chunkpilot.control.collect.encode``). A table
    defaults to ``records`` (the input's fields with the answers), a compressed file to what its
    name without the compression suffix would get."""
    inner = fmt or ("records" if table is not None else output_format(strip_compression_suffix(path), None))
    if inner not in ("openai", "records"):
        raise OutputError(f"-o {path}: {inner} output cannot be written as "
                          f"{'CSV/TSV' if table else compression}: use --format records or openai")
    key = output_key or PromptSpec.from_dict(run.spec.prompt).output_key
    try:
        folder = tempfile.mkdtemp(prefix=".collect-", dir=os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    partial = f"{path}.partial"
    try:
        merged = os.path.join(folder, "merged.jsonl")
        report = collect(run, merged, allow_partial, max_examples, fmt=inner, output_key=key)
        encode(merged, partial, table, compression, inner, key)
        os.replace(partial, path)
    except BaseException as exc:
        if os.path.exists(partial):
            os.unlink(partial)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report.bytes = os.path.getsize(path)
    return report


def _collect_parquet(run: OpenRun, chunks: list[str], done: set[str], fd: int, output_key: str, max_examples: int) -> CollectReport:
    from chunkpilot.control.collect.parquet import write_parquet

    def write(report: CollectReport, tally: RecordsTally) -> None:
        report.records, report.errors = write_parquet(run.spec, run.run_store, done, fd, output_key, tally)
        report.bytes = os.fstat(fd).st_size

    return _with_duplicates(run, chunks, done, max_examples, write)


def _collect_records(run: OpenRun, chunks: list[str], done: set[str], fd: int, output_key: str, max_examples: int) -> CollectReport:
    def write(report: CollectReport, tally: RecordsTally) -> None:
        with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as out:
            writer = RecordsJsonWriter(out, output_key)
            for row in merged_records(run.spec, run.run_store, done, tally):
                report.bytes += writer.write(row)
                report.records += 1
                report.errors += row.error is not None

    return _with_duplicates(run, chunks, done, max_examples, write)


def _with_duplicates(run: OpenRun, chunks: list[str], done: set[str], max_examples: int, write) -> CollectReport:
    """``write(report, tally)`` the records, counting duplicate custom_ids beside it (a thread): the
    same count the OpenAI format gives (``duplicates``)."""
    report, tally = CollectReport(), RecordsTally()
    with ThreadPoolExecutor(1, thread_name_prefix="collect-dups") as pool:
        duplicates = pool.submit(duplicate_custom_ids, run.run_store, chunks, done, max_examples)
        write(report, tally)
        report.duplicate_custom_ids, report.duplicate_examples = duplicates.result()
    report.ok = report.records - report.errors
    report.skipped_blank = tally.blank
    report.mismatched_chunks = sorted(tally.missing or {})
    return report


def collect_to(run: OpenRun, output: str, allow_partial: bool = False, **options) -> CollectReport:
    """``collect`` into a local path, or into ``s3://bucket/key`` (merged in a local temporary
    file, then uploaded in one atomic, multipart put). ``options`` go to ``collect``."""
    if not output.startswith("s3://"):
        return collect(run, output, allow_partial, **options)
    check_output(run.spec, run.run_uri, output)
    store, key = split_object_uri(output)
    if not key or key.endswith("/"):
        raise OutputError(f"-o {output}: name the object to write, e.g. s3://bucket/results/run.jsonl")
    store.check_writable()
    with tempfile.TemporaryDirectory(prefix="chunkpilot-collect-") as folder:
        local = os.path.join(folder, key.rsplit("/", 1)[-1])
        report = collect(run, local, allow_partial, **options)
        store.put_file(key, local)
    return report


def _collect_into(store: Store, chunks: list[str], done_chunks: set[str], fd: int, max_examples: int) -> CollectReport:
    """This thread lays out and copies parts; a reader thread forwards markers' hashes to the
    counter's process. Markers only verify, so copying never waits for them."""
    report = CollectReport()
    done = [(index, chunk) for index, chunk in enumerate(chunks) if chunk in done_chunks]
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="collect") as pool, CounterProcess(max_examples) as counter:
        partial = len(done) < len(chunks)  # then this thread sends hashes too, and ends the counter's input
        markers = pool.submit(read_markers, store, done, counter, stop, end_input=not partial)
        written: dict[str, int] = {}
        try:
            with Copier(store, fd) as copier:
                ends = split_ends(store, chunks)  # a part of a split chunk past its cut is the child's to write
                for index, (chunk, parts) in enumerate(parts_by_chunk(store, chunks)):
                    hash_ids = chunk not in done_chunks
                    report.chunk_offsets.append(report.bytes)
                    tally = lay_out_chunk(store, parts, fd, report.bytes, copier, hash_ids=hash_ids, end=ends.get(chunk))
                    if hash_ids:
                        counter.add(encode_hashes(tally.hashes), index << 32)
                    written[chunk] = tally.records
                    report.records += tally.records
                    report.errors += tally.errors
                    report.ok += tally.records - tally.errors
                    report.bytes += tally.bytes
                    report.duplicates_dropped += tally.dropped
        except BaseException:
            stop.set()
            counter.close()  # a reader blocked on the counter's pipe fails at once
            raise
        counts = markers.result()
        if partial:
            counter.end_input()
        for chunk, marker in counts.items():
            report.skipped_blank += marker.skipped_blank
            if not marker.matches(written[chunk]):
                report.mismatched_chunks.append(chunk)
        report.duplicate_custom_ids, report.duplicate_example_records = counter.finish()
    return report
