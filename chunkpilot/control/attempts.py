"""The run's attempt records and worker histories, read and written with as few round trips as can be.

``AttemptBook`` keeps the records this process has seen, each with the listing mtime its copy is
good for: a record is read again only when the ``jobs/`` listing shows it written since. Only the
watcher holding the run's lease writes records (``update``, ``note_job``), so a read-modify-write
here races nobody, and its own writes need no reading back. The backend's first-hand facts about
a job — its start and end by the backend's clock, its recoveries, its resources and their
price — are written the first time they are seen, and again only when they change.

**The ledger** (``jobs/_ledger.json.gz``): the watcher writes its copy of every record, and the
summaries of finished worker lives, into one object — at most every ``LEDGER_SECONDS`` while
something changed, and when it stops. A fresh reader (``launcher status``) takes from it every
record and life whose own object is older than the ledger (the listings it makes anyway give
both mtimes) and reads only the rest, so a look at a 1,000-chunk run costs one GET here, not
one per attempt.

``lives`` reads the worker histories (``chunkpilot.history``) the cost of preemptions needs:
those of chunks that had more than one worker life, or whose last attempt ended without
finishing.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from typing import Callable, Iterable, Mapping

from chunkpilot import history, layout
from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.spec import AttemptRecord, RunSpec
from chunkpilot.store import ObjectInfo, Store
from chunkpilot.control.backends.base import JobState
from chunkpilot.control.pricing import CatalogLookup, price_for, user_price

log = logging.getLogger("chunkpilot.watch")

LEDGER_SECONDS = 30.0

LifeKey = tuple[str, int, int]


class AttemptBook:
    def __init__(self, run_store: Store, spec: RunSpec, catalog: CatalogLookup | None = None):
        self.run_store = run_store
        self.spec = spec
        self.catalog = catalog
        self._records: dict[tuple[str, int], AttemptRecord] = {}
        self._good_below: dict[tuple[str, int], float] = {}  # a copy is current for listing mtimes below this
        self.lives: dict[LifeKey, history.Life] = {}  # finished lives: they no longer change
        self.running: dict[LifeKey, history.Life] = {}  # running lives seen ready: all cost needs of them
        self._ledger_lives: dict[LifeKey, tuple[history.Life, float]] = {}
        self._ledger_running: dict[LifeKey, history.Life] = {}
        self._ledger_mtime: float | None = None
        self._dirty = False
        self._flushed_at = 0.0

    def get(self, chunk: str, attempt: int) -> AttemptRecord | None:
        key = (chunk, attempt)
        if key not in self._records:
            try:
                self._records[key] = AttemptRecord.from_json(self.run_store.get(layout.attempt_record(chunk, attempt)))
            except NotFoundError:
                return None
        return self._records[key]

    def created(self, record: AttemptRecord) -> None:
        self._keep_own(record)

    def update(self, chunk: str, attempt: int, only_if_open: bool = False, **changes) -> None:
        record = self.get(chunk, attempt)
        if record is None or (only_if_open and record.ended_at is not None):
            return
        self._write(record.with_(**changes))

    def _write(self, record: AttemptRecord) -> None:
        self.run_store.put(layout.attempt_record(record.chunk, record.attempt), record.to_json())
        self._keep_own(record)

    def _keep_own(self, record: AttemptRecord) -> None:
        """A record this process wrote: the lease makes it the latest, whatever later listings say."""
        key = (record.chunk, record.attempt)
        self._records[key], self._good_below[key] = record, math.inf
        self._dirty = True

    def settle(self, record: AttemptRecord, job: JobState, reason: str, now: float) -> AttemptRecord:
        """Record the end of a launch whose job the backend reports ended, for a reader that is not
        the watcher (``status``, ``report`` of a run nobody watches): the backend's own end time
        (now when it has none). Written only if the record is unchanged since it was read (a
        conditional write against its etag), so a watcher writing it meanwhile wins; either way
        the end is the backend's fact, so both writers agree. Returns the record as settled."""
        key = layout.attempt_record(record.chunk, record.attempt)
        try:
            etag = self.run_store.head(key).etag
            current = AttemptRecord.from_json(self.run_store.get(key))
        except (NotFoundError, StoreError, ValueError):
            return record
        if current.ended_at is not None:
            self._keep_read(current)
            return current
        settled = current.with_(state=job.status.value, reason=current.reason or reason,
                                ended_at=job.ended_at if job.ended_at is not None else now,
                                started_at=current.started_at if current.started_at is not None else job.started_at)
        try:
            if self.run_store.put_if_match(key, settled.to_json(), etag):
                self._keep_read(settled)
                return settled
        except StoreError as exc:
            log.warning("could not record the end of %s: %s", record.name, exc)
        return record

    def _keep_read(self, record: AttemptRecord) -> None:
        key = (record.chunk, record.attempt)
        self._records[key], self._good_below[key] = record, time.time()

    def note_job(self, chunk: str, attempt: int, job: JobState) -> None:
        """Write what the backend says about the job that the record lacks (or that changed)."""
        record = self.get(chunk, attempt)
        if record is None:
            return
        changes: dict = {}
        if job.started_at is not None and record.started_at is None:
            changes["started_at"] = job.started_at
        if job.recoveries != record.recoveries:
            changes["recoveries"] = job.recoveries
        if job.resources and job.resources != record.resources:
            changes["resources"] = dict(job.resources)
        if job.ended_at is not None and record.ended_at is not None and job.ended_at != record.ended_at:
            changes["ended_at"] = job.ended_at  # the backend's own clock beats our observation
        if "resources" in changes or (not record.price_source and job.resources):
            price = price_for(changes.get("resources", record.resources), self.spec.use_spot,
                              user_price(self.spec.price_per_hour, self.spec.on_demand_price_per_hour), self.catalog)
            changes.update(price_per_hour=price.per_hour, on_demand_per_hour=price.on_demand_per_hour,
                           price_source=price.source)
        if changes:
            self._write(record.with_(**changes))

    def all(self, listed: Mapping[tuple[str, int], float], parallel: int = 1,
            ledger: ObjectInfo | None = None) -> list[AttemptRecord]:
        """The records of every listed (chunk, attempt) -> its listing mtime: what the ledger or an
        earlier read holds unless written since, the rest read (in parallel)."""
        self._load_ledger(ledger)
        todo = [k for k, mtime in listed.items() if k not in self._records or mtime >= self._good_below.get(k, -math.inf)]

        def read(key: tuple[str, int]) -> AttemptRecord | None:
            try:
                return AttemptRecord.from_json(self.run_store.get(layout.attempt_record(*key)))
            except (NotFoundError, StoreError, ValueError, TypeError, KeyError):
                return None

        if todo:
            with ThreadPoolExecutor(max(1, min(parallel, len(todo))), thread_name_prefix="attempts") as pool:
                for key, record in zip(todo, pool.map(read, todo)):
                    if record is not None:
                        if self._records.get(key) != record:
                            self._dirty = True
                        self._records[key] = record
                        self._good_below[key] = listed[key] + 1e-6
        return [self._records[k] for k in sorted(listed) if k in self._records]

    def lives_of(self, listed: Mapping[LifeKey, float], parallel: int = 1,
                 wanted: Callable[[str], bool] = lambda chunk: True,
                 running: Iterable[LifeKey] = ()) -> list[history.Life]:
        """The lives of the listed histories (key -> mtime) whose chunk is ``wanted``: finished
        ones from this book or the ledger unless written since, the rest read. ``running``: each
        chunk's latest life while its attempt is open — cost needs only its start and readiness
        (``chunkpilot.control.cost.interruptions``), which do not change, so a copy that has them will do."""
        for key, (life, good_below) in self._ledger_lives.items():
            if key in listed and key not in self.lives and listed[key] < good_below:
                self.lives[key] = life
        running = set(running)
        for key in running:
            if key not in self.running and key in self._ledger_running:
                self.running[key] = self._ledger_running[key]
        stand_in = {k: self.running[k] for k in running if k in self.running}
        cache = {**self.lives, **stand_in}
        lives = read_lives(self.run_store, sorted(listed), cache, parallel, wanted)
        for key, life in cache.items():
            if key not in stand_in and key not in self.lives:
                self.lives[key] = life
                self._dirty = True
        for life in lives:
            key = (life.chunk, life.attempt, life.life)
            if key in running and key not in stand_in and life.outcome is None and life.ready_at is not None:
                self.running[key] = life
                self._dirty = True
        return lives

    def flush(self, force: bool = False) -> None:
        """Write the ledger if anything changed (at most every LEDGER_SECONDS unless ``force``)."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._flushed_at < LEDGER_SECONDS):
            return
        body = {"records": [asdict(r) for _, r in sorted(self._records.items())],
                "lives": [_life_dict(life) for _, life in sorted(self.lives.items())],
                "running": [_life_dict(life) for _, life in sorted(self.running.items())]}
        try:
            self.run_store.put(layout.LEDGER, gzip.compress(json.dumps(body, separators=(",", ":")).encode(), 6))
        except StoreError as exc:  # a stale ledger only costs readers reads
            log.warning("could not write the attempt ledger: %s", exc)
            return
        self._dirty, self._flushed_at = False, now

    def _load_ledger(self, info: ObjectInfo | None) -> None:
        if info is None or info.mtime == self._ledger_mtime:
            return
        try:
            body = json.loads(gzip.decompress(self.run_store.get(layout.LEDGER)))
            records = [AttemptRecord.from_dict(d) for d in body.get("records", ())]
            lives = [_life_from_dict(d) for d in body.get("lives", ())]
            running = [_life_from_dict(d) for d in body.get("running", ())]
        except (NotFoundError, StoreError, OSError, ValueError, TypeError, KeyError) as exc:
            log.debug("attempt ledger not used: %s", exc)
            return
        self._ledger_mtime = info.mtime
        for record in records:
            key = (record.chunk, record.attempt)
            if self._good_below.get(key, -math.inf) < info.mtime:
                self._records[key], self._good_below[key] = record, info.mtime
        self._ledger_lives = {(life.chunk, life.attempt, life.life): (life, info.mtime) for life in lives}
        self._ledger_running = {(life.chunk, life.attempt, life.life): life for life in running}


def _life_dict(life: history.Life) -> dict:
    """A life for the ledger: its summary without the commit and claim lists (only the report draws them)."""
    return asdict(replace(life, commits=(), claims=()))


def _life_from_dict(d: dict) -> history.Life:
    return history.Life(**{**d, "commits": (), "claims": ()})


def list_lives(run_store: Store) -> dict[LifeKey, float]:
    """Every (chunk, attempt, life) with a history -> its mtime, from one listing of ``history/``."""
    return {p: obj.mtime for obj in run_store.list(layout.HISTORY) if (p := history.parse_key(obj.key))}


def read_lives(run_store: Store, keys: Iterable[LifeKey], cache: dict | None = None,
               parallel: int = 1, wanted: Callable[[str], bool] = lambda chunk: True) -> list[history.Life]:
    """The lives of ``keys`` whose chunk is ``wanted`` (a finished life is cached in ``cache``)."""
    cache = {} if cache is None else cache
    keys = [k for k in keys if wanted(k[0])]
    todo = [k for k in keys if k not in cache]

    def read(key: tuple[str, int, int]) -> history.Life | None:
        try:
            return history.summarize(*key, history.parse(run_store.get(layout.history(*key))))
        except (NotFoundError, StoreError):
            return None

    fresh: dict = {}
    if todo:
        with ThreadPoolExecutor(max(1, min(parallel, len(todo))), thread_name_prefix="history") as pool:
            for key, life in zip(todo, pool.map(read, todo)):
                if life is not None:
                    fresh[key] = life
    last: dict[str, tuple[str, int, int]] = {}
    for key in keys:
        last[key[0]] = max(last.get(key[0], key), key)
    for key, life in fresh.items():
        if life.outcome is not None or key != last[key[0]]:  # it ended, or a later life followed it
            cache[key] = life
    return [cache.get(k) or fresh[k] for k in keys if k in cache or k in fresh]


def lives_worth_reading(lives: Iterable[LifeKey], records: list[AttemptRecord], done: set[str]) -> set[str]:
    """Chunks whose histories the cost of preemptions needs: more than one life, or a last
    attempt that ended without the chunk being done."""
    per_chunk: dict[str, int] = {}
    for chunk, _, _ in lives:
        per_chunk[chunk] = per_chunk.get(chunk, 0) + 1
    latest: dict[str, AttemptRecord] = {}
    for r in records:
        if r.chunk not in latest or r.attempt > latest[r.chunk].attempt:
            latest[r.chunk] = r
    out = {c for c, n in per_chunk.items() if n > 1}
    out |= {c for c, r in latest.items() if r.ended_at is not None and c not in done}
    return out
