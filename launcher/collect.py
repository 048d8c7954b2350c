"""Merge a run's committed parts into one output, in input order, each record exactly once.

Parts of a chunk are visited in order of their first key. Each part holds every
record of its interval, sorted, so the merge keeps only "how far have we
written" (``reach``): a part entirely past it is copied as bytes, a part entirely
before it is a duplicate (a zombie's or a resumed attempt's), and only a part
straddling it is read line by line. Memory stays flat whatever the record count.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO

from launcher.errors import IncompleteRunError
from launcher.observe import observe
from launcher.runs import OpenRun
from launcher.spec import PartName, SuccessMarker
from launcher.store import ObjectInfo, Store
from worker.output import key_of_line

_CUSTOM_ID = re.compile(rb'"custom_id": ("(?:[^"\\]|\\.)*")')
_OK = b'"error": null}\n'
BLOCK = 1024 * 1024


@dataclass
class CollectReport:
    records: int = 0
    ok: int = 0
    errors: int = 0
    skipped_blank: int = 0
    duplicates_dropped: int = 0  # records committed twice (zombies, resumes) written once
    duplicate_custom_ids: int = 0  # distinct custom_ids that appear on more than one record
    duplicate_examples: list[str] = field(default_factory=list)
    duplicate_id_hashes: set[int] = field(default_factory=set)
    incomplete_chunks: list[str] = field(default_factory=list)
    mismatched_chunks: list[str] = field(default_factory=list)  # output count != _SUCCESS count
    bytes: int = 0


def collect(run: OpenRun, out: BinaryIO, allow_partial: bool = False, max_examples: int = 5) -> CollectReport:
    """Write the run's merged output to ``out``; refuse if a chunk is incomplete unless ``allow_partial``."""
    observed = observe(run.run_store, run.spec, backend=None)
    report = CollectReport(incomplete_chunks=[c for c, o in observed.items() if o.done is None])
    if report.incomplete_chunks and not allow_partial:
        shown = ", ".join(report.incomplete_chunks[:10])
        more = "" if len(report.incomplete_chunks) <= 10 else f" and {len(report.incomplete_chunks) - 10} more"
        raise IncompleteRunError(
            f"{len(report.incomplete_chunks)} of {len(observed)} chunk(s) are not done ({shown}{more}): "
            "run `launcher watch` to finish them, or pass --allow-partial"
        )
    seen_ids: Counter[int] = Counter()
    for chunk in sorted(observed):
        obs = observed[chunk]
        before = report.records
        _merge_chunk(run.run_store, chunk, sorted(obs.parts, key=lambda p: (p[0].first, _neg(p[0].end))), out, report, seen_ids)
        if obs.done is not None:
            marker = SuccessMarker.from_json(run.run_store.get(obs.done.key))
            report.skipped_blank += marker.skipped_blank
            if report.records - before != marker.records:
                report.mismatched_chunks.append(chunk)
    report.duplicate_id_hashes = {h for h, n in seen_ids.items() if n > 1}
    report.duplicate_custom_ids = len(report.duplicate_id_hashes)
    return report


def _neg(key: tuple[int, int]) -> tuple[int, int]:
    return (-key[0], -key[1])


def _merge_chunk(store: Store, chunk: str, parts: list[tuple[PartName, ObjectInfo]], out: BinaryIO, report: CollectReport, seen_ids: Counter) -> None:
    reach: tuple[int, int] | None = None
    for part, info in parts:
        if reach is not None and part.end <= reach:
            report.duplicates_dropped += part.records
            continue
        with store.open(info.key) as stream:
            if reach is None or part.first >= reach:
                _copy(stream, out, report, seen_ids)
            else:
                _copy_after(stream, out, reach, report, seen_ids)
        reach = part.end if reach is None else max(reach, part.end)


def _account(data: bytes, report: CollectReport, seen_ids: Counter) -> None:
    lines = data.count(b"\n")
    ok = data.count(_OK)
    report.records += lines
    report.ok += ok
    report.errors += lines - ok
    report.bytes += len(data)
    for m in _CUSTOM_ID.finditer(data):
        seen_ids[hash(m.group(1))] += 1


def _copy(stream: BinaryIO, out: BinaryIO, report: CollectReport, seen_ids: Counter) -> None:
    carry = b""
    while True:
        block = stream.read(BLOCK)
        if not block:
            break
        block = carry + block
        cut = block.rfind(b"\n") + 1
        whole, carry = block[:cut], block[cut:]
        if whole:
            out.write(whole)
            _account(whole, report, seen_ids)
    if carry:  # a part always ends with a newline; this is only defensive
        out.write(carry + b"\n")
        _account(carry + b"\n", report, seen_ids)


def _copy_after(stream: BinaryIO, out: BinaryIO, reach: tuple[int, int], report: CollectReport, seen_ids: Counter) -> None:
    for line in stream:
        if key_of_line(line) < reach:
            report.duplicates_dropped += 1
            continue
        out.write(line)
        _account(line, report, seen_ids)


def collect_to_file(run: OpenRun, path: str, allow_partial: bool = False) -> CollectReport:
    """Collect into ``path`` atomically: a failed collect never leaves a half-written file behind."""
    tmp = f"{path}.partial"
    try:
        with open(tmp, "wb") as out:
            report = collect(run, out, allow_partial)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if report.duplicate_id_hashes:
        report.duplicate_examples = duplicate_id_examples(path, report.duplicate_id_hashes)
    return report


def duplicate_id_examples(path: str, report_hashes: set[int], limit: int = 5) -> list[str]:
    """A few custom_ids that occur more than once in a collected file (a second pass, only for the report)."""
    examples: list[str] = []
    seen: set[bytes] = set()
    with open(path, "rb") as f:
        for line in f:
            m = _CUSTOM_ID.search(line)
            if not m or hash(m.group(1)) not in report_hashes:
                continue
            if m.group(1) in seen and len(examples) < limit:
                examples.append(m.group(1).decode("utf-8", "replace").strip('"'))
            seen.add(m.group(1))
    return examples
