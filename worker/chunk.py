"""Answering one chunk, resumably (DESIGN.md "Worker", steps 1-6), with an engine the worker keeps.

Records stream from the chunk's ranges in input order (the run's input format reads them);
those already committed are skipped; the rest go to the engine with a bounded number in
flight, so continuous batching stays full and a slow request never idles it. Finished
results wait in ``pending`` (input order) and are committed every ``commit_seconds`` or
``commit_records`` finished, on SIGTERM and at the end: the finished prefix and runs long
enough to be worth a part behind a slower record become parts; every other finished answer
goes to the attempt's held object (``worker.commit``). A kill loses what finished since the
last commit.

The chunk is held through a claim (``chunkpilot.claims``): every heartbeat and every commit
first renews it, and a renewal that fails — the chunk was taken over — stops the run at once,
committing nothing more (``ChunkOutcome.LOST``). ``worker.loop`` claims chunks and runs them.

At each heartbeat the holder also answers a split request (``chunkpilot.splits``): it cuts its
range past every record it has taken from its reader, hands the rest over as a new chunk, and
from then on reads no record at or past the cut (``_answer_split``).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import signal
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator, Protocol

from chunkpilot import answer_columns, layout, splits
from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.formats import get_format, units_before
from chunkpilot.formats.base import Record, record_boundary
from chunkpilot.inputs import InputDigest
from chunkpilot.layout import PartName
from chunkpilot.output import error_line, line_outcome, ok_line, position_of_line, record_error_line
from chunkpilot.pipeline.documents import PASSED_CODES
from chunkpilot.prompts import PromptSpec
from chunkpilot.requests import RecordError, Request, Result, custom_id_of, request_from_record
from chunkpilot.requests.structured import check_answer
from chunkpilot.retry import call
from chunkpilot.spec import ChunkManifest, Position, Progress, RunSpec, SuccessMarker, custom_id_hash, encode_hashes
from chunkpilot.store import Store
from worker.commit import (
    BARRIER,
    CommittedSet,
    PartBatch,
    Slot,
    held_answers,
    held_slots,
    recovered_slot,
    take_finished,
    write_part,
)
from worker.engines.base import Engine
from worker.journal import Journal

log = logging.getLogger("chunkpilot.worker")

EXIT_DONE = 0
EXIT_PREEMPTED = 75  # SkyPilot job_recovery.recover_on_exit_codes
EXIT_CONFIG = 2


class ChunkOutcome(enum.Enum):
    DONE = "done"  # every record is in a part; _SUCCESS written
    STOPPED = "stopped"  # a stop was asked for (SIGTERM): what finished is committed
    FAILED = "failed"  # fail-fast: the chunk stops for good (``ChunkRun.failure`` says why)
    LOST = "lost"  # the claim was taken over: nothing more was committed


class Guard(Protocol):
    """What keeps a chunk ours: ``keep()`` renews the claim, False once it is lost."""

    def keep(self) -> bool: ...


class Unguarded:
    """No claim to keep (a chunk run alone, in tests)."""

    def keep(self) -> bool:
        return True
# A chunk whose first this-many fresh answers are all errors with one code stops (exit 2) instead of
# paying for a GPU to write the same error line for every record left (off with max_error_rate 1).
FAIL_FAST_RECORDS = 32


@dataclass(frozen=True)
class ChunkOptions:
    """``attempt``: the chunk's attempt number (its claim's), which names the parts it writes.
    ``max_in_flight``: requests kept in the engine (``worker.engines`` says what the engine can batch)."""

    attempt: int = 0
    max_in_flight: int = 128
    heartbeat_seconds: float = 5.0
    grace_seconds: float = 20.0
    store_retry_seconds: float = 120.0


@dataclass
class Counters:
    records: int = 0
    skipped_blank: int = 0
    resumed: int = 0
    ok: int = 0
    errors: int = 0
    committed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class StopRequested:
    """Set by SIGTERM/SIGINT: stop taking records, finish or drop what is in flight, commit."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, signum, frame) -> None:  # signal handler
        if self.at is None:
            self.at = time.monotonic()
            log.warning("signal %s: stopping after committing finished records", signum)

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    @property
    def requested(self) -> bool:
        return self.at is not None


# What ``_records`` yields for each record: None if a part holds it, its held answer line, or
# what to send (a Request, or a RecordError that becomes an error line).
Work = tuple[Position, Position, Request | RecordError | bytes | None]


class ChunkRun:
    """One worker's run of one chunk it holds, with the engine it keeps.

    ``stop`` is the worker's: a stop asked for while the chunk runs ends it (``STOPPED``) after
    committing what finished. ``journal`` is the worker life's history: the chunk's commits and
    beats go into it.
    """

    def __init__(self, store: Store, spec: RunSpec, manifest: ChunkManifest, engine: Engine, options: ChunkOptions,
                 journal: Journal, stop: StopRequested, guard: Guard | None = None,
                 on_answer: Callable[[], None] | None = None, on_split: Callable[[str], None] | None = None):
        self.store = store
        self.journal = journal
        self.spec = spec
        self.manifest = manifest
        self.chunk = manifest.chunk
        self.engine = engine
        self.options = options
        self.stop = stop
        self.guard = guard or Unguarded()
        self.on_answer = on_answer  # called at each answer the engine gives (the worker notes its first)
        self.lost = False
        self.counters = Counters()
        self.pending: deque[Slot | None] = deque()
        self.in_flight: dict[str, Slot] = {}
        self.requests: dict[str, Request] = {}
        self.seq = 0
        self.unsaved = 0  # records finished since the last commit: what a kill now would lose
        self.held_saved: list[Position] = []  # positions in this attempt's held object
        self.held_fresh = 0  # of them, answered by this process
        self.custom_id_hashes = array("Q")  # every record's, in input order, for _SUCCESS
        self.input_digest = InputDigest()  # of every input byte the chunk's records came from, for _SUCCESS
        self.started = time.monotonic()
        self.last_commit = self.started
        self.last_commit_wall = time.time()
        self.last_heartbeat = 0.0
        self.units_done = 0
        self.error_codes: Counter[str] = Counter()  # the chunk's committed error lines, by code
        self.passed: Counter[str] = Counter()  # pipeline records not this step's to answer, by code (all read)
        self.first_fresh: list[Slot] | None = []  # this attempt's first records, in input order (fail fast)
        self.failure: str | None = None  # why the chunk stopped for good (fail fast)
        self.work: Iterator[Work] = iter(())
        self.exhausted = False  # every record read
        self.max_pending = 0
        self.on_split = on_split  # called with the child's id when this run hands over a remainder
        # Splits: the first position not yet taken from the record reader (every record before it
        # is read ahead, in flight or answered), records taken, the cut (nothing at or past it is
        # taken), and what this attempt committed itself (its rate).
        first = manifest.ranges[0] if manifest.ranges else None
        self.taken_to: Position = (first.source, first.start) if first else (0, 0)
        self.taken_records = 0
        self.committed_to: Position = self.taken_to  # past every part and held answer found at the start
        self.cut: Position | None = None
        self.fresh_units = 0
        self.splits_given = 0
        self.children: list[str] = []  # the chunks this run handed over: the worker that asked claims them

    # -- driving it ---------------------------------------------------------------
    # A chunk run is driven in steps, so one engine can serve two chunks at once: the worker
    # (``worker.loop``) takes the next chunk while this one's last requests finish, and keeps the
    # engine full across the boundary. ``run`` drives a chunk alone.

    def run(self) -> ChunkOutcome:
        """Answer the chunk alone on the engine, to its end."""
        self.begin()
        while True:
            self.pump(self.options.max_in_flight - len(self.in_flight))
            if self.in_flight:
                for result in self.engine.step():
                    self.deliver(result)
            outcome = self.tick()
            if outcome is not None:
                return outcome

    def begin(self) -> None:
        """Learn what earlier attempts committed and held; the records to answer start streaming."""
        existing = self._committed_parts()
        committed = CommittedSet(existing)
        own = [p.seq for p in existing if p.attempt == self.options.attempt]
        self.seq = max(own) + 1 if own else 0
        held = held_answers(self._held_bodies(), committed)
        # A cut may not fall inside what earlier attempts committed or held: those parts belong to this chunk.
        self.committed_to = max([self.committed_to, *(p.end for p in existing), *((s, o + 1) for s, o in held)])
        self.error_codes.update(self._committed_error_codes(existing))
        log.info("chunk %s attempt %d: %d part(s) already committed, %d held answer(s)",
                 self.chunk, self.options.attempt, len(existing), len(held))
        self.work = self._work(committed, held)
        self.max_pending = max(4 * self.options.max_in_flight, 2 * self.spec.commit_records)

    @property
    def all_read(self) -> bool:
        """Every record of the chunk is read (in flight, answered or committed): the worker may take
        the next chunk to keep the engine full."""
        return self.exhausted

    def pump(self, room: int) -> int:
        """Send up to ``room`` more requests to the engine (fewer when records run out or too many
        answers wait to be committed); returns how many were sent."""
        sent = 0
        if self.stop.requested:
            return 0
        before = len(self.in_flight)
        while (not self.exhausted and self.failure is None and len(self.in_flight) - before < room
               and len(self.pending) < self.max_pending):
            if not self._feed_one(self.work):
                self.exhausted = True
        sent = len(self.in_flight) - before
        return max(0, sent)

    def owns(self, request_id: str) -> bool:
        return request_id in self.in_flight

    def deliver(self, result: Result) -> None:
        """An answer the engine gave for one of this chunk's requests."""
        self._finish(result)

    def tick(self) -> ChunkOutcome | None:
        """Commit and heartbeat when due; the outcome once the chunk run is over (None: not yet)."""
        if self.in_flight or not (self.exhausted or self.stop.requested):
            now = time.monotonic()
            if self.stop.requested and now - self.stop.at >= self.options.grace_seconds:
                log.warning("grace period over: dropping %d unfinished request(s)", len(self.in_flight))
                self._abort()
                return self._end()
            if now - self.last_commit >= self.spec.commit_seconds or self.unsaved >= self.spec.commit_records:
                # Runs behind an unfinished record become parts once worth one: 16 per commit_records.
                self._commit(min_run=max(1, self.spec.commit_records // 16))
            if now - self.last_heartbeat >= self.options.heartbeat_seconds:
                self._heartbeat("running")
            if self.failure is not None or self.lost:
                self._abort()
                return self._end()
            return None
        return self._end()

    def _abort(self) -> None:
        """Drop this chunk's requests from the engine (another chunk's stay)."""
        if self.in_flight:
            self.engine.abort(sorted(self.in_flight))
        self.in_flight.clear()

    def _end(self) -> ChunkOutcome:
        if self.lost or not self._commit(min_run=1):
            log.warning("chunk %s: lost its claim (taken over); stopped feeding it, committed nothing more", self.chunk)
            return ChunkOutcome.LOST
        if self.failure is not None:
            self._heartbeat("failed", reason=self.failure)
            log.error("chunk %s stopped: %s", self.chunk, self.failure)
            return ChunkOutcome.FAILED
        if not self.exhausted or self.pending:
            self._heartbeat("stopped")
            log.warning("chunk %s stopped: %d record(s) committed this attempt", self.chunk, self.counters.committed)
            return ChunkOutcome.STOPPED
        if not self.guard.keep():
            return ChunkOutcome.LOST
        self._delete_held()
        self._write_success()
        self._heartbeat("done")
        return ChunkOutcome.DONE

    def _committed_parts(self) -> list[PartName]:
        parts = []
        for obj in self._retry(lambda: list(self.store.list(layout.outputs(self.chunk)))):
            part = PartName.parse(layout.parse_output(obj.key)[1])
            if part is not None:
                parts.append(part)
        return parts

    def _committed_error_codes(self, parts: list[PartName]) -> Counter[str]:
        """Codes of the error lines earlier parts hold (only parts with errors are read; overlaps counted once)."""
        codes: Counter[str] = Counter()
        seen: set[Position] = set()
        for part in parts:
            if not part.errors:
                continue
            try:
                body = self._retry(lambda p=part: self.store.get(layout.part(self.chunk, p)))
            except NotFoundError:
                continue
            for line in body.splitlines():
                try:
                    position, outcome = position_of_line(line), line_outcome(line)
                except (ValueError, TypeError, AttributeError):
                    continue
                if outcome.error_code is not None and outcome.error_code not in PASSED_CODES and position not in seen:
                    seen.add(position)
                    codes[outcome.error_code] += 1
        return codes

    def _held_bodies(self) -> Iterator[bytes]:
        for obj in self._retry(lambda: list(self.store.list(layout.held_folder(self.chunk)))):
            try:
                yield self._retry(lambda k=obj.key: self.store.get(k))
            except NotFoundError:  # deleted by a worker that finished the chunk meanwhile
                continue

    def _work(self, committed: CommittedSet, held: dict[Position, bytes]) -> Iterator[Work]:
        """Every record of the chunk with what to do about it."""
        defaults, prompt = self.spec.sampling, PromptSpec.from_dict(self.spec.prompt)
        records = self._records(prompt)
        for record in records:
            if self.cut is not None and record.position >= self.cut:
                return  # handed over: the child chunk answers it (and counts it)
            self.taken_to, self.taken_records = record.end, self.taken_records + 1
            self.input_digest.add(record.raw)
            if record.blank:
                self.counters.skipped_blank += 1
                continue
            position = record.position
            self.counters.records += 1
            self.custom_id_hashes.append(custom_id_hash(custom_id_of(position, record.fields, prompt.id_key)))
            if record.error is not None and record.error[0] in PASSED_CODES:
                self.passed[record.error[0]] += 1
            if position in committed or position in held:
                self.counters.resumed += 1
                yield position, record.end, held.pop(position, None)
            elif record.error is not None:
                custom_id = custom_id_of(position, record.fields, prompt.id_key)
                yield position, record.end, RecordError(position, custom_id, *record.error)
            else:
                yield position, record.end, request_from_record(position, record.fields, defaults, prompt)

    def _records(self, prompt: PromptSpec) -> Iterator[Record]:
        """The chunk's records: read by the run's input format, or for a pipeline step, the records
        of the step before it with its answers merged in (``chunkpilot.pipeline.read``)."""
        if self.spec.pipeline:
            from chunkpilot.pipeline.read import step_records
            from chunkpilot.store import open_store

            root = open_store(self.store.uri.rsplit("/", 1)[0])
            return step_records(root, self.spec, self.manifest)
        return get_format(self.spec.input_format).records(self.spec.inputs, self.manifest, prompt.columns())

    def _feed_one(self, work: Iterator[Work]) -> bool:
        item = next(work, None)
        if item is None:
            return False
        position, end, todo = item
        if todo is None:  # already committed by an earlier part: no part of ours may span it
            if not self.pending or self.pending[-1] is not BARRIER:
                self.pending.append(BARRIER)
            return True
        if isinstance(todo, bytes):  # answered by an earlier life and held: it goes into our parts
            self.pending.append(recovered_slot(position, end, todo))
            return True
        slot = Slot(position, end)
        self.pending.append(slot)
        if isinstance(todo, RecordError) and todo.code in PASSED_CODES:  # not this step's: no error of its
            slot.line, slot.passed = record_error_line(self.spec.run_id, todo), True
            self.unsaved += 1
            return True
        if self.first_fresh is not None and len(self.first_fresh) < FAIL_FAST_RECORDS:
            self.first_fresh.append(slot)
        if isinstance(todo, RecordError):
            slot.line = record_error_line(self.spec.run_id, todo, self._input_revision(position))
            slot.error_code, slot.error_message = todo.code, todo.message
            self.counters.errors += 1
            self.unsaved += 1
            self._check_fail_fast()
            return True
        request_id = f"{position[0]}:{position[1]}"
        rejected = self.engine.add(request_id, todo)
        self.in_flight[request_id] = slot
        self.requests[request_id] = todo
        if rejected is not None:
            self._finish(rejected)
        return True

    def _input_revision(self, position) -> str | None:
        """The hub commit the record's input is pinned to, for its output line's lineage (None: no hub)."""
        return self.spec.inputs[position[0]].revision

    def _finish(self, result: Result) -> None:
        slot = self.in_flight.pop(result.request_id, None)
        request = self.requests.pop(result.request_id, None)
        if slot is None or request is None:
            return
        self.unsaved += 1
        if self.on_answer is not None:
            self.on_answer()
        if not result.error and request.constraint:
            result = _checked(request, result)
        if result.error:
            code, message = result.error
            slot.line = error_line(self.spec.run_id, request.position, request.custom_id, code, message,
                                   self._input_revision(request.position))
            slot.error_code, slot.error_message = code, message
            self.counters.errors += 1
        else:
            slot.line = ok_line(self.spec.run_id, request, result, self.engine.model_name, self.engine.model_revision,
                                self._input_revision(request.position))
            slot.ok = True
            slot.prompt_tokens, slot.completion_tokens = result.prompt_tokens, result.completion_tokens
            self.counters.ok += 1
            self.counters.prompt_tokens += result.prompt_tokens
            self.counters.completion_tokens += result.completion_tokens
        self._check_fail_fast()

    def _check_fail_fast(self) -> None:
        """Once this attempt's first FAIL_FAST_RECORDS records (in input order) are answered: if all
        are errors with one code, the rest would most likely fail the same way — stop the chunk."""
        first = self.first_fresh
        if first is None or len(first) < FAIL_FAST_RECORDS or any(s.line is None for s in first):
            return
        self.first_fresh = None  # judged once
        codes = {s.error_code for s in first}
        if self.spec.max_error_rate >= 1 or len(codes) != 1 or None in codes:
            return
        (code,) = codes
        self.failure = (f"the first {FAIL_FAST_RECORDS} records all failed with {code} (e.g. {first[0].error_message}); "
                        "stopped early. Fix the input or options and submit again "
                        "(--max-error-rate 1 turns this check off)")

    # -- committing -------------------------------------------------------------
    def _commit(self, *, min_run: int) -> bool:
        """Parts for what can form them, the held object for every other finished answer — once the
        claim is renewed. False (nothing written) when the claim is lost."""
        if not self.guard.keep():
            self.lost = True
            return False
        self.last_commit, since = time.monotonic(), self.last_commit_wall
        self.last_commit_wall = time.time()
        batches, remaining = take_finished(list(self.pending), min_run=min_run)
        for batch in batches:
            name = self._retry(lambda b=batch: write_part(self.store, self.chunk, b, self.options.attempt, self.seq))
            self.seq = name.seq + 1
            if self.spec.input_format == "parquet":
                self._write_answer_columns(name, batch)
            self.counters.committed += sum(not s.recovered for s in batch.slots)
            self.error_codes.update(s.error_code for s in batch.slots if s.error_code is not None)
            self.units_done = max(self.units_done, units_before(self.manifest, batch.slots[-1].end))
        fresh = [s for b in batches for s in b.slots if not s.recovered]
        self.fresh_units += sum(s.end[1] - s.position[1] for s in fresh)
        if fresh:
            self.journal.commit(len(fresh), sum(s.error_code is not None for s in fresh),
                                sum(s.prompt_tokens for s in fresh), sum(s.completion_tokens for s in fresh),
                                batches[-1].slots[-1].end, since)
        self.pending = deque(remaining)
        held = held_slots(remaining)
        self.held_fresh = sum(not s.recovered for s in held)
        positions = [s.position for s in held]
        if positions != self.held_saved:  # parts first: a kill in between leaves held answers a part also has, harmless
            body = b"".join(s.line for s in held)  # type: ignore[misc]
            self._retry(lambda: self.store.put(layout.held(self.chunk, self.options.attempt), body))
            self.held_saved = positions
        self.unsaved = 0
        return True

    def _write_answer_columns(self, name: PartName, batch: PartBatch) -> None:
        """The part's answers in columns (``chunkpilot.answer_columns``), for ``collect -o x.parquet``.
        Only a copy: if it cannot be written (the store's own retries only), collect reads the part's
        lines, and the run goes on."""
        key = layout.answer_columns(layout.part(self.chunk, name))
        try:
            self.store.put(key, answer_columns.encode(s.line for s in batch.slots))  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - never fail or stall an attempt over an optional copy
            log.warning("chunk %s: answer columns of %s not written (%s); collect will read the part instead",
                        self.chunk, name.filename, exc)

    def _delete_held(self) -> None:
        """Every record is in a part now: held objects (any attempt's) only repeat them."""
        for obj in self._retry(lambda: list(self.store.list(layout.held_folder(self.chunk)))):
            self._retry(lambda k=obj.key: self.store.delete(k))

    def _heartbeat(self, state: str, reason: str = "") -> None:
        self.last_heartbeat = time.monotonic()
        if state == "running" and not self.guard.keep():
            self.lost = True
            return
        if state == "running":
            self._answer_split()
        elapsed = max(self.last_heartbeat - self.started, 1e-6)
        progress = Progress(
            chunk=self.chunk,
            attempt=self.options.attempt,
            state=state,
            records_done=self.counters.resumed + self.counters.committed,
            units_done=self.units_done,
            units_total=self.manifest.size,
            tokens_per_s=round(self.counters.completion_tokens / elapsed, 2),
            updated_at=time.time(),
            error_codes=dict(self.error_codes),
            reason=reason,
            units_per_s=round(self.rate(), 3),
        )
        write_heartbeat(self.store, progress)
        self.journal.beat(self.counters.ok + self.counters.errors, self.counters.committed, self.held_fresh)

    def rate(self) -> float:
        """Units this attempt answered and committed per second since it started."""
        return self.fresh_units / max(time.monotonic() - self.started, 1e-6)

    def _answer_split(self) -> None:
        """If an idle worker asked for part of this chunk, hand over what this run has not taken
        (``chunkpilot.splits``), or refuse. Called right after the claim was renewed."""
        try:
            if not self.store.exists(layout.split_request(self.chunk)):
                return
            request = splits.pending(self.store, self.chunk)
            if request is None:
                return
            fmt = get_format(self.spec.input_format)
            floor = max(self.taken_to, self.committed_to)
            taken_units = units_before(self.manifest, self.taken_to)
            at = None
            if self.taken_records and self.failure is None and not self.stop.requested:
                min_units = 2 * self.spec.commit_records * taken_units / self.taken_records
                at = splits.split_point(self.manifest, floor, self.rate(), request.rate, math.ceil(min_units),
                                        lambda source, offset: record_boundary(fmt, self.spec.inputs, source, offset))
            if at is None:
                splits.withdraw(self.store, self.chunk)
                log.info("chunk %s: refused a split asked by %s (too little left past what it has read)",
                         self.chunk, request.by)
                self.journal.event("split_refused", chunk=self.chunk, by=request.by)
                return
        except StoreError as exc:  # asked again later, or the asker gives up: never worth stopping for
            log.warning("chunk %s: split request not answered: %s", self.chunk, exc)
            return
        try:
            answer = splits.hand_over(self.store, self.manifest, at)
            if answer is None:  # it has had all the children it may
                splits.withdraw(self.store, self.chunk)
                log.info("chunk %s: refused a split asked by %s (no child id left)", self.chunk, request.by)
                return
        except StoreError as exc:
            # Did the parent's manifest land? If it names the child, the cut holds whatever the store
            # answered: read it back (retrying an outage), never guess.
            log.warning("chunk %s: split not confirmed (%s); reading its manifest back", self.chunk, exc)
            answer = self._split_landed()
        if answer is None:
            return
        handed = self.manifest.size - answer[0].size
        self.manifest, child = answer
        self.cut = at
        self.splits_given += 1
        self.children.append(child)
        log.info("chunk %s: handed over %s to %s: %d %s from %s on", self.chunk, child, request.by, handed,
                 self.spec.unit, at)
        self.journal.event("split", chunk=self.chunk, child=child, by=request.by)
        if self.on_split is not None:
            self.on_split(child)

    def _split_landed(self) -> tuple[ChunkManifest, str] | None:
        """After a failed hand-over: (the stored manifest, its new child) if the parent's cut landed."""
        stored = ChunkManifest.from_json(self._retry(lambda: self.store.get(layout.manifest(self.chunk))))
        if len(stored.children) > len(self.manifest.children):
            return stored, stored.children[-1]
        return None

    def _write_success(self) -> None:
        marker = SuccessMarker(
            chunk=self.chunk,
            attempt=self.options.attempt,
            records=self.counters.records,
            skipped_blank=self.counters.skipped_blank,
            units=self.manifest.size,
            ok=self.counters.ok,
            errors=self.counters.errors,
            resumed_records=self.counters.resumed,
            prompt_tokens=self.counters.prompt_tokens,
            completion_tokens=self.counters.completion_tokens,
            seconds=round(time.monotonic() - self.started, 3),
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            custom_id_hashes=encode_hashes(self.custom_id_hashes),
            error_codes=dict(self.error_codes),
            input_digest=self.input_digest.hexdigest(),
            passed=dict(self.passed),
        )
        wrote = self._retry(lambda: self.store.put_if_absent(layout.done_marker(self.chunk), marker.to_json()))
        log.info(
            "chunk %s done: %d records (%d ok, %d errors, %d resumed), %d blank lines skipped%s",
            self.chunk, marker.records, marker.ok, marker.errors, marker.resumed_records, marker.skipped_blank,
            "" if wrote else " (another worker had already marked it done)",
        )

    def _retry(self, action):
        """Run a store action, retrying StoreError (not NotFoundError) beyond the store's own retries
        for up to ``store_retry_seconds``."""
        return call(action, _store_outage, seconds=self.options.store_retry_seconds, log=log, what="store call")


def _checked(request: Request, result: Result) -> Result:
    """The result, or an ``invalid_structured_output`` error if its answer breaks the request's constraint."""
    value, problem = check_answer(request.constraint, result.text)
    if problem is None:
        if "json" in request.constraint or "json_object" in request.constraint:
            return dataclasses.replace(result, extra={**result.extra, "parsed": value})
        return result
    shown = result.text if len(result.text) <= 200 else result.text[:200] + "..."
    message = f"{problem} (finish_reason: {result.finish_reason}; answer: {shown!r})"
    return dataclasses.replace(result, error=("invalid_structured_output", message))


def _store_outage(exc: BaseException) -> bool:
    return isinstance(exc, StoreError) and not isinstance(exc, NotFoundError)


def write_heartbeat(store: Store, progress: Progress) -> None:
    try:
        store.put(layout.progress(progress.chunk), progress.to_json())
    except StoreError as exc:  # a missed heartbeat is not worth stopping for
        log.warning("heartbeat not written: %s", exc)


def state_only(store: Store, chunk: str, attempt: int, state: str, reason: str = "") -> None:
    """A heartbeat before the chunk's loop runs: the engine is starting, or the chunk cannot run (``reason``)."""
    write_heartbeat(store, Progress(chunk, attempt, state, updated_at=time.time(), reason=reason))
