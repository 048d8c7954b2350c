"""One look at a run: four listings of the store, the claims of unfinished chunks, and one backend poll.

``out/`` gives committed parts (their names carry intervals and record counts) and
``_SUCCESS`` markers; ``jobs/`` gives each worker slot's launches; ``progress/`` gives
heartbeat times (object mtimes, no reads); ``claims/`` says which chunks were ever claimed,
and the claims of those not known done are read (at most the chunks in flight, plus those
handed back). Claims are read and the backend polled *before* ``out/`` is listed, so a claim
marked done or a job seen as finished has its marker in the listing; heartbeats only get
newer, so ``progress/`` is listed meanwhile, on a second thread: on S3 each listing page is a
round trip, and two in flight overlap their waits.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chunkpilot import claims, layout
from chunkpilot.chunks import run_chunks
from chunkpilot.claims import Claim
from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.layout import PartName
from chunkpilot.names import job_name
from chunkpilot.spec import Progress, RunSpec, SuccessMarker, WorkerBeat
from chunkpilot.store import ObjectInfo, Store
from chunkpilot.control.backends.base import Backend, JobState
from chunkpilot.control.reconcile import ChunkView, WorkerView

# At most this many heartbeats/markers are read per look (status, a watch cycle), in parallel.
DETAIL_READS = 64


@dataclass
class ChunkObservation:
    chunk: str
    size: int  # in the run's format's unit
    claim: Claim | None = None
    done: ObjectInfo | None = None
    heartbeat_at: float | None = None
    parts: list[tuple[PartName, ObjectInfo]] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        """Attempts so far: the claim's, or (a done chunk whose claim was not read) the parts' latest."""
        if self.claim is not None:
            return self.claim.attempt
        return max((p.attempt for p, _ in self.parts), default=0)

    def view(self) -> ChunkView:
        return ChunkView(chunk=self.chunk, done=self.done is not None, claim=self.claim, heartbeat_at=self.heartbeat_at,
                         done_at=self.done.mtime if self.done is not None else None)


@dataclass
class WorkerObservation:
    """One worker slot: its launches (their records' mtimes) and its latest job's state."""

    slot: str
    attempts: int = 0
    attempt_mtimes: dict[int, float] = field(default_factory=dict)
    launched_at: float | None = None
    job: JobState | None = None

    def view(self) -> WorkerView:
        return WorkerView(self.slot, self.attempts, self.job, self.launched_at)


class Observed(dict):
    """chunk -> ChunkObservation; the worker slots; the attempt-record ledger the ``jobs/`` listing showed."""

    ledger: ObjectInfo | None = None
    workers: dict[str, WorkerObservation]
    run_id: str = ""

    def chunk_views(self) -> list[ChunkView]:
        return [o.view() for o in self.values()]

    def worker_views(self) -> list[WorkerView]:
        return [w.view() for w in self.workers.values()]


def list_attempts(run_store: Store, every: dict[str, dict[int, float]] | None = None,
                  observed: Observed | None = None) -> dict[str, tuple[int, float]]:
    """slot -> (latest launch number, its record's mtime) from one listing of ``jobs/``;
    ``every`` (when given) gets each slot's launches and their records' mtimes; ``observed``
    (when given) the ledger's listing entry."""
    latest: dict[str, tuple[int, float]] = {}
    for obj in run_store.list(layout.JOBS):
        parsed = layout.parse_attempt_record(obj.key)
        if not parsed:
            if obj.key == layout.LEDGER and observed is not None:
                observed.ledger = obj
            continue
        if every is not None:
            every.setdefault(parsed[0], {})[parsed[1]] = obj.mtime
        if parsed[1] >= latest.get(parsed[0], (0, 0.0))[0]:
            latest[parsed[0]] = (parsed[1], obj.mtime)
    return latest


def observe(run_store: Store, spec: RunSpec, backend: Backend | None, known_done: set[str] = frozenset()) -> Observed:
    """Observe every chunk (split remainders included: ``chunkpilot.chunks``) and worker of ``spec``.
    ``known_done``: chunks known done, whose claims are not worth reading."""
    chunks = Observed((c.id, ChunkObservation(c.id, c.size)) for c in run_chunks(run_store, spec))
    chunks.workers, chunks.run_id = {}, spec.run_id
    with ThreadPoolExecutor(1, thread_name_prefix="observe") as pool:
        heartbeats = pool.submit(_listed, run_store, layout.PROGRESS)
        every: dict[str, dict[int, float]] = {}
        for slot, (attempt, mtime) in list_attempts(run_store, every, chunks).items():
            chunks.workers[slot] = WorkerObservation(slot, attempt, every[slot], mtime)
        _read_claims(run_store, chunks, known_done)
        if backend is not None:
            _poll(backend, spec.run_id, chunks.workers)
        _add_outputs(chunks, _listed(run_store, layout.OUTPUTS))
        for obj in heartbeats.result():
            chunk = layout.parse_progress(obj.key)
            if chunk in chunks:
                chunks[chunk].heartbeat_at = obj.mtime
    return chunks


def _listed(store: Store, prefix: str) -> list[ObjectInfo]:
    return list(store.list(prefix))


def _read_claims(run_store: Store, chunks: Observed, known_done: set[str]) -> None:
    """The claims of chunks that were claimed and are not known done, read in parallel."""
    todo = [c for key in run_store.keys(layout.CLAIMS)
            if (c := layout.parse_claim(key)) in chunks and c not in known_done]
    if not todo:
        return

    def read(chunk: str) -> Claim | None:
        try:
            return claims.read_claim(run_store, chunk)[0]
        except (StoreError, ValueError, KeyError, TypeError):
            return None  # unreadable now: seen as unclaimed this cycle

    with ThreadPoolExecutor(min(len(todo), max(1, run_store.parallel_reads)), thread_name_prefix="claims") as pool:
        for chunk, claim in zip(todo, pool.map(read, todo)):
            chunks[chunk].claim = claim


def _poll(backend: Backend, run_id: str, workers: dict[str, WorkerObservation]) -> None:
    """The latest launch of every slot is polled (an ended job is not worth asking about again
    only once its record says so: the watcher's book knows, and a poll of a few names is cheap)."""
    names = {job_name(run_id, w.slot, w.attempts): w for w in workers.values() if w.attempts}
    if names:
        for name, state in backend.poll(run_id, sorted(names)).items():
            if name in names:
                names[name].job = state


def _add_outputs(chunks: dict[str, ChunkObservation], listing: list[ObjectInfo]) -> None:
    parts: dict[str, list] = defaultdict(list)
    for obj in listing:
        chunk, filename = layout.parse_output(obj.key)
        if chunk not in chunks:
            continue
        if filename == layout.DONE_NAME:
            chunks[chunk].done = obj
        else:
            part = PartName.parse(filename)
            if part is not None:
                parts[chunk].append((part, obj))
    for chunk, found in parts.items():
        chunks[chunk].parts = found


@dataclass(frozen=True)
class ChunkDetail:
    """What a chunk's heartbeat (or done marker) says beyond the listing."""

    state: str = ""  # the worker's own: starting | running | stopped | failed | done
    reason: str = ""
    error_codes: dict[str, int] = field(default_factory=dict)


def read_details(run_store: Store, chunks: list[str], observed: dict[str, ChunkObservation],
                 cache: dict[str, ChunkDetail] | None = None, limit: int = DETAIL_READS) -> dict[str, ChunkDetail]:
    """Details of ``chunks`` (at most ``limit`` read, in parallel): a done chunk's from its marker
    (final: kept in ``cache``), any other's from its heartbeat. Unreadable ones are left out."""
    cache = {} if cache is None else cache
    out = {c: cache[c] for c in chunks if c in cache}
    todo = [c for c in chunks if c not in cache][:limit]

    def read(chunk: str) -> ChunkDetail | None:
        try:
            if observed[chunk].done is not None:
                marker = SuccessMarker.from_json(run_store.get(layout.done_marker(chunk)))
                return ChunkDetail("done", "", dict(marker.error_codes))
            beat = Progress.from_json(run_store.get(layout.progress(chunk)))
            return ChunkDetail(beat.state, beat.reason, dict(beat.error_codes))
        except (NotFoundError, StoreError, ValueError, TypeError, KeyError):
            return None

    if todo:
        with ThreadPoolExecutor(min(len(todo), max(1, run_store.parallel_reads)), thread_name_prefix="details") as pool:
            for chunk, detail in zip(todo, pool.map(read, todo)):
                if detail is None:
                    continue
                out[chunk] = detail
                if detail.state == "done":
                    cache[chunk] = detail
    return out


def read_worker_beats(run_store: Store, cache: dict[tuple[str, int], WorkerBeat] | None = None
                      ) -> dict[tuple[str, int], WorkerBeat]:
    """Every worker launch's heartbeat, (slot, launch) -> WorkerBeat, from one listing of ``workers/``
    and a read of each beat written since it was last read (a final one — done, stopped, failed —
    is kept in ``cache`` and never read again)."""
    cache = {} if cache is None else cache
    listed = {p: obj.mtime for obj in run_store.list(layout.WORKERS) if (p := layout.parse_worker_beat(obj.key))}
    todo = [k for k in listed if k not in cache or cache[k].state not in FINAL_WORKER_STATES]
    out = {k: cache[k] for k in listed if k in cache and k not in todo}

    def read(key: tuple[str, int]) -> WorkerBeat | None:
        try:
            return WorkerBeat.from_json(run_store.get(layout.worker_beat(*key)))
        except (NotFoundError, StoreError, ValueError, TypeError, KeyError):
            return None

    if todo:
        with ThreadPoolExecutor(min(len(todo), max(1, run_store.parallel_reads)), thread_name_prefix="beats") as pool:
            for key, beat in zip(todo, pool.map(read, todo)):
                if beat is not None:
                    out[key] = beat
                    if beat.state in FINAL_WORKER_STATES:
                        cache[key] = beat
    return out


FINAL_WORKER_STATES = ("done", "stopped", "failed")
