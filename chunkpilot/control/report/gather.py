"""Reading what a report needs from the store (and, for a live run, its backend).

The same look as ``status`` — listings, every chunk's claim, the job poll, markers and heartbeats
of every chunk with errors, the worker heartbeats, every launch's attempt record — plus every
worker history (with its claim and commit events), and a few error lines with the records they
answer (at most ``EXAMPLE_PARTS`` parts are read for them).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from chunkpilot import layout
from chunkpilot.errors import BackendError, NotFoundError, StoreError
from chunkpilot.formats import get_format
from chunkpilot.output import position_of_line
from chunkpilot.spec import ChunkManifest, SourceRange
from chunkpilot.control.attempts import AttemptBook, list_lives, read_lives
from chunkpilot.control.backends.base import Backend
from chunkpilot.control.observe import observe
from chunkpilot.control.pricing import Price
from chunkpilot.control.report.model import ReportFacts
from chunkpilot.control.runs import OpenRun
from chunkpilot.control.watch import LookCache, WatchOptions, decide_run, listed_attempts, look

log = logging.getLogger("chunkpilot.report")

EXAMPLES_PER_CODE = 3
EXAMPLE_PARTS = 20
EXCERPT_CHARS = 400


def gather(run: OpenRun, backend: Backend | None, price: Price | None = None) -> ReportFacts:
    spec = run.spec
    try:
        observed = observe(run.run_store, spec, backend)
    except BackendError as exc:  # a report of what the store says is still worth having
        log.warning("%s: the report shows what the store says, without the jobs' live state", exc)
        observed = observe(run.run_store, spec, None)
    now = time.time()
    decision = decide_run(run, observed, WatchOptions(), now=now)
    parallel = max(1, run.run_store.parallel_reads)
    book = AttemptBook(run.run_store, spec)
    # Every life with its commits, read first: the finished ones then serve the look's cost as well.
    lives = read_lives(run.run_store, sorted(list_lives(run.run_store)), book.lives, parallel)
    cache = LookCache(book=book)
    status = look(run, decision, observed, cache, price, detail_reads=len(spec.chunks))
    records = book.all(listed_attempts(observed), parallel, observed.ledger)  # read by the look: nothing read here
    parts = [(chunk, part, info.mtime) for chunk, obs in observed.items() for part, info in obs.parts]
    return ReportFacts(
        spec=spec, t0=status.totals["started_at"], now=now, totals=status.totals,
        rows=[asdict(r) for r in status.rows], cost=status.cost, records=records, lives=lives, parts=parts,
        error_examples=error_examples(run, [(c, p) for c, p, _ in sorted(parts) if p.errors]), price=price,
        workers=[asdict(w) for w in status.workers], claims={chunk: obs.claim for chunk, obs in observed.items()},
    )


def error_examples(run: OpenRun, parts: list, per_code: int = EXAMPLES_PER_CODE,
                   max_parts: int = EXAMPLE_PARTS) -> dict[str, list[dict[str, Any]]]:
    """A few error lines per code, each with an excerpt of the record it answers."""
    examples: dict[str, list[dict[str, Any]]] = {}
    for chunk, part in parts[:max_parts]:
        try:
            body = run.run_store.get(layout.part(chunk, part))
        except (NotFoundError, StoreError):
            continue
        for line in body.splitlines():
            try:
                obj = json.loads(line)
                error = obj.get("error")
                if not isinstance(error, dict):
                    continue
                code = str(error.get("code") or "error")
                if len(examples.setdefault(code, [])) >= per_code:
                    continue
                position = position_of_line(line)
            except (ValueError, TypeError, AttributeError):
                continue
            examples[code].append({"chunk": chunk, "custom_id": obj.get("custom_id"), "message": str(error.get("message", "")),
                                   "record": _excerpt(run, position)})
    return examples


def _excerpt(run: OpenRun, position: tuple[int, int]) -> str:
    """The input record at ``position``, as the user wrote it (or its fields), cut to EXCERPT_CHARS."""
    spec = run.spec
    try:
        source, offset = position
        manifest = ChunkManifest("x", (SourceRange(source, offset, spec.inputs[source].length),), spec.unit)
        records = get_format(spec.input_format).records(spec.inputs, manifest)
        record = next(iter(records), None)  # the first record from there: the one at ``position``
        getattr(records, "close", lambda: None)()
    except Exception as exc:  # noqa: BLE001 - an example is a nicety: say why it is missing
        return f"(could not read the record: {exc})"
    if record is None:
        return ""
    if record.raw is not None:
        text = record.raw.decode("utf-8", errors="replace").rstrip("\n")
    else:
        text = json.dumps(record.fields, ensure_ascii=False, default=str)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"
