"""The run's attempt records and worker histories, read and written with as few round trips as can be.

``AttemptBook`` keeps the records this process has seen; an ended attempt's record no
longer changes, so it is read once. Only the watcher holding the run's lease writes
records (``update``, ``note_job``), so a read-modify-write here races nobody. The backend's
first-hand facts about a job — its start and end by the backend's clock, its recoveries,
its resources and their price — are written the first time they are seen, and again only
when they change.

``read_lives`` reads the worker histories (``chunkpilot.history``) the cost of preemptions
needs: those of chunks that had more than one worker life, or whose last attempt ended
without finishing.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from chunkpilot import history, layout
from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.spec import AttemptRecord, RunSpec
from chunkpilot.store import Store
from launcher.backends.base import JobState
from launcher.pricing import CatalogLookup, price_for, user_price

log = logging.getLogger("chunkpilot.watch")


class AttemptBook:
    def __init__(self, run_store: Store, spec: RunSpec, catalog: CatalogLookup | None = None):
        self.run_store = run_store
        self.spec = spec
        self.catalog = catalog
        self._records: dict[tuple[str, int], AttemptRecord] = {}

    def get(self, chunk: str, attempt: int) -> AttemptRecord | None:
        key = (chunk, attempt)
        if key not in self._records:
            try:
                self._records[key] = AttemptRecord.from_json(self.run_store.get(layout.attempt_record(chunk, attempt)))
            except NotFoundError:
                return None
        return self._records[key]

    def created(self, record: AttemptRecord) -> None:
        self._records[(record.chunk, record.attempt)] = record

    def update(self, chunk: str, attempt: int, only_if_open: bool = False, **changes) -> None:
        record = self.get(chunk, attempt)
        if record is None or (only_if_open and record.ended_at is not None):
            return
        self._write(record.with_(**changes))

    def _write(self, record: AttemptRecord) -> None:
        self.run_store.put(layout.attempt_record(record.chunk, record.attempt), record.to_json())
        self._records[(record.chunk, record.attempt)] = record

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

    def all(self, listed: Iterable[tuple[str, int]], parallel: int = 1) -> list[AttemptRecord]:
        """The records of every listed (chunk, attempt): an ended one cached, the rest read (in parallel)."""
        listed = list(listed)
        todo = [k for k in listed if k not in self._records or self._records[k].ended_at is None]

        def read(key: tuple[str, int]) -> AttemptRecord | None:
            try:
                return AttemptRecord.from_json(self.run_store.get(layout.attempt_record(*key)))
            except (NotFoundError, StoreError, ValueError, TypeError, KeyError):
                return None

        if todo:
            with ThreadPoolExecutor(max(1, min(parallel, len(todo))), thread_name_prefix="attempts") as pool:
                for key, record in zip(todo, pool.map(read, todo)):
                    if record is not None:
                        self._records[key] = record
        return [self._records[k] for k in listed if k in self._records]


def list_all_attempts(run_store: Store) -> list[tuple[str, int]]:
    """Every (chunk, attempt) with a record, from one listing of ``jobs/``."""
    return sorted(p for obj in run_store.list(layout.JOBS) if (p := layout.parse_attempt_record(obj.key)))


def list_lives(run_store: Store) -> list[tuple[str, int, int]]:
    """Every (chunk, attempt, life) with a history, from one listing of ``history/``."""
    return sorted(p for k in run_store.keys(layout.HISTORY) if (p := history.parse_key(k)))


def read_lives(run_store: Store, keys: Iterable[tuple[str, int, int]], cache: dict | None = None,
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


def lives_worth_reading(lives: list[tuple[str, int, int]], records: list[AttemptRecord], done: set[str]) -> set[str]:
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
