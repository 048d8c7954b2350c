"""One look at a run: three listings of the store and one backend poll, whatever the chunk count.

``out/`` gives committed parts (their names carry intervals and record counts) and
``_SUCCESS`` markers; ``jobs/`` gives each chunk's attempts; ``progress/`` gives
heartbeat times (object mtimes, no reads). The backend is polled *before*
``out/`` is listed, so a job seen as finished has already written its marker;
heartbeats only get newer, so ``progress/`` is listed meanwhile, on a second
thread: on S3 each listing page is a round trip, and two in flight overlap their
waits.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chunkpilot import layout
from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.layout import PartName
from chunkpilot.names import job_name
from chunkpilot.spec import Progress, RunSpec, SuccessMarker
from chunkpilot.store import ObjectInfo, Store
from launcher.backends.base import Backend, JobState
from launcher.reconcile import ChunkView

# At most this many heartbeats/markers are read per look (status, a watch cycle), in parallel.
DETAIL_READS = 64


@dataclass
class ChunkObservation:
    chunk: str
    size: int  # in the run's format's unit
    attempts: int = 0  # the latest attempt's number
    attempt_mtimes: dict[int, float] = field(default_factory=dict)  # every attempt with a record: its mtime
    launched_at: float | None = None
    job: JobState | None = None
    done: ObjectInfo | None = None
    heartbeat_at: float | None = None
    parts: list[tuple[PartName, ObjectInfo]] = field(default_factory=list)

    def view(self) -> ChunkView:
        return ChunkView(
            chunk=self.chunk,
            done=self.done is not None,
            attempts=self.attempts,
            job=self.job,
            launched_at=self.launched_at,
            heartbeat_at=self.heartbeat_at,
        )



class Observed(dict):
    """chunk -> ChunkObservation, and the attempt-record ledger the ``jobs/`` listing showed."""

    ledger: ObjectInfo | None = None


def list_attempts(run_store: Store, every: dict[str, dict[int, float]] | None = None,
                  observed: Observed | None = None) -> dict[str, tuple[int, float]]:
    """chunk -> (latest attempt number, its record's mtime) from one listing of ``jobs/``;
    ``every`` (when given) gets each chunk's attempts and their records' mtimes; ``observed``
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


def observe(run_store: Store, spec: RunSpec, backend: Backend | None, skip_poll: set[str] = frozenset()) -> Observed:
    """Observe every chunk of ``spec``. ``skip_poll``: chunks known done, not worth polling."""
    chunks = Observed((c.id, ChunkObservation(c.id, c.size)) for c in spec.chunks)
    with ThreadPoolExecutor(1, thread_name_prefix="observe") as pool:
        heartbeats = pool.submit(_listed, run_store, layout.PROGRESS)
        every: dict[str, dict[int, float]] = {}
        for chunk, (attempt, mtime) in list_attempts(run_store, every, chunks).items():
            if chunk in chunks:
                chunks[chunk].attempts, chunks[chunk].launched_at = attempt, mtime
                chunks[chunk].attempt_mtimes = every[chunk]
        if backend is not None:
            _poll(backend, spec.run_id, chunks, skip_poll)
        _add_outputs(chunks, _listed(run_store, layout.OUTPUTS))
        for obj in heartbeats.result():
            chunk = layout.parse_progress(obj.key)
            if chunk in chunks:
                chunks[chunk].heartbeat_at = obj.mtime
    return chunks


def _listed(store: Store, prefix: str) -> list[ObjectInfo]:
    return list(store.list(prefix))


def _poll(backend: Backend, run_id: str, chunks: dict[str, ChunkObservation], skip_poll: set[str]) -> None:
    names = {job_name(run_id, c.chunk, c.attempts): c for c in chunks.values() if c.attempts and c.chunk not in skip_poll}
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
