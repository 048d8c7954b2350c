"""A warm worker: one engine start, then chunk after chunk, until nothing is left to claim.

One worker job (``python -m worker --run <store>/<run> --worker w3 --attempt 2``) loops:

1. claim the next chunk nobody holds (``chunkpilot.claims``; a worker starts looking at its own
   share of the chunk list, so workers rarely race for the same claim);
2. start the engine, the first time only — a worker with nothing to claim never starts one;
3. answer the chunk (``worker.chunk.ChunkRun``), resuming from what earlier attempts committed,
   renewing the claim at every heartbeat and before every commit;
4. mark the claim done (or failed, fail-fast), and go back to 1.

When nothing is left to claim it does not exit at once: it asks the chunk with the longest time
to go to split (``chunkpilot.splits``), waits a bounded time for the holder to answer, and claims
the remainder; only when no chunk is worth splitting does it exit 0. It exits 75 when stopped (SIGTERM: the chunk it holds is
committed and released at once, so another worker picks it up without waiting for its lease),
2 when its engine cannot start (a configuration error: its claim is released for others, and
retrying the worker will not help). A store outage it cannot ride out ends it with 75; its claim
then expires.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from chunkpilot import claims, layout, splits
from chunkpilot.chunks import run_chunk_ids
from chunkpilot.engines import loads_model
from chunkpilot.errors import ChunkpilotError, ConfigError, InputError, NotFoundError, StoreError
from chunkpilot.inputs import check_pin
from chunkpilot.model import ResolvedModel, check_pinned, resolve_pinned
from chunkpilot.names import engine_of, job_name, slot_of, validate_worker_id
from chunkpilot.spec import ChunkManifest, Progress, ResumeAllowance, RunSpec, WorkerBeat
from chunkpilot.store import Store, open_store
from worker.chunk import (
    EXIT_CONFIG,
    EXIT_DONE,
    EXIT_PREEMPTED,
    ChunkOptions,
    ChunkOutcome,
    ChunkRun,
    StopRequested,
    state_only,
)
from worker.engines import load_engine
from worker.engines.base import Engine, read_ahead
from worker.journal import Journal

log = logging.getLogger("chunkpilot.worker")


@dataclass(frozen=True)
class WorkerOptions:
    """``worker``: this worker's id (``w3``); ``attempt``: which launch of it this is (1, 2...),
    as the launcher numbered it. ``only``: answer just these chunks (tests, debugging a chunk)."""

    worker: str = "w0"
    attempt: int = 1
    heartbeat_seconds: float = 5.0
    grace_seconds: float = 20.0
    store_retry_seconds: float = 120.0
    claim_ttl: float = claims.CLAIM_TTL
    only: frozenset[str] | None = None
    # Seconds past twice the holders' heartbeat an idle worker waits for its split request's answer.
    split_wait_seconds: float = 3.0
    splits: bool = True  # False: exit when nothing is left to claim, asking no one to split (benchmarks)
    engines: int = 1  # engine processes on this worker's machine (``worker.machine``): spreads where each starts
    devices: str = ""  # the GPUs this process was given (CUDA_VISIBLE_DEVICES), for its heartbeat


class ClaimGuard:
    """Keeps one claim: ``keep()`` renews it, and says False from the first renewal that fails on."""

    def __init__(self, store: Store, held: claims.Held, ttl: float, clock: Callable[[], float] = time.time):
        self.store, self.held, self.ttl, self.clock = store, held, ttl, clock
        self.lost = False
        self._lock = threading.Lock()

    def keep(self) -> bool:
        with self._lock:
            if self.lost:
                return False
            try:
                self.held = claims.renew(self.store, self.held, self.clock(), self.ttl)
            except claims.LostClaim as exc:
                log.warning("%s", exc)
                self.lost = True
            except StoreError as exc:  # not lost: the lease runs on; the next renewal may get through
                log.warning("claim on chunk %s not renewed: %s", self.held.claim.chunk, exc)
            return not self.lost

    @contextmanager
    def kept_meanwhile(self) -> Iterator[None]:
        """Renew the claim from a thread of its own while this one is busy in a long call that cannot
        (starting an engine: minutes on a loaded machine, longer than the lease). A stopped process
        stops this thread too, so a hung worker still loses its claim."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.ttl / 4):
                if not self.keep():
                    return

        thread = threading.Thread(target=renew, name="claim-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def end(self, state: claims.ClaimState, reason: str = "") -> None:
        """Write the claim's final state (or hand it back); a lost claim is left as its new holder wrote it."""
        if self.lost:
            return
        try:
            if not claims.end(self.store, self.held, state, reason):
                log.warning("chunk %s: its claim changed before it could be marked %s", self.held.claim.chunk, state)
        except StoreError as exc:  # the lease runs out by itself
            log.warning("chunk %s: claim not marked %s (%s); its lease will expire", self.held.claim.chunk, state, exc)


@dataclass
class Running:
    """A chunk this worker is answering: its run on the shared engine and the claim that keeps it."""

    run: ChunkRun
    guard: "ClaimGuard"


class ClaimScanner:
    """Finds the next chunk this worker can take. Chunks seen finished are remembered, so late in
    a run a scan reads only the claims that can still change."""

    def __init__(self, store: Store, spec: RunSpec, options: WorkerOptions, take_back: str | None = None):
        self.store, self.spec, self.options = store, spec, options
        # The chunk this launch held when it was last seen (SkyPilot restarted it in place): tried
        # first, so its claim is renewed again before its lease runs out — otherwise it waits, unrenewed,
        # while this worker answers unclaimed chunks, and the launcher takes the job for hung.
        self.take_back = take_back
        self.allowance = ResumeAllowance()
        ids = [c for c in spec.chunk_ids if self._wanted(c)]
        # Engine k of slot i looks first at share i*E+k of (workers x E): a machine's engines spread out too.
        engines = max(1, options.engines)
        position = int(slot_of(options.worker)[1:]) * engines + min(engine_of(options.worker), engines - 1)
        start = (position * len(ids)) // (max(1, spec.workers or 1) * engines) % max(1, len(ids))
        self.order = ids[start:] + ids[:start]  # this worker's share of the list first
        self.planned = set(ids)
        self.finished: set[str] = set()
        # A pipeline step reading another step's output: a chunk is taken only once its upstream
        # chunk is done (chunkpilot.pipeline.ready); ``waiting`` holds those seen not ready yet.
        self.upstream = _upstream_of(store, spec)
        self.waiting: set[str] = set()

    def _wanted(self, chunk: str) -> bool:
        return self.options.only is None or chunk.split("_")[0] in self.options.only

    def max_attempts(self, chunk: str) -> int:
        return self.allowance.attempts_for(chunk, self.spec.max_attempts)

    def next(self, now: float, busy: frozenset[str] = frozenset()) -> claims.Held | None:
        """Claim the next chunk this worker can take, or None; ``busy``: the chunks it answers now
        (its own claims, which a new life of the same launch would take back, but this one must not)."""
        self.allowance = claims.read_allowance(self.store)  # a resumed run, or `watch --max-attempts`, changes it
        listed = {c for key in self.store.keys(layout.CLAIMS) if (c := layout.parse_claim(key))}
        # Remainders split off planned chunks (chunkpilot.chunks) first: an idle worker asked for them.
        children = [c for c in run_chunk_ids(self.store, self.spec) if c not in self.planned and self._wanted(c)]
        todo = [c for c in children + self.order if c not in self.finished and c not in busy]
        first = [self.take_back] if self.take_back in listed and self.take_back in todo else []
        self.take_back = None
        rest = [c for c in todo if c not in first]
        self.waiting = set()
        for chunk in first + [c for c in rest if c not in listed] + [c for c in rest if c in listed]:
            upstream = self._upstream_state(chunk, now)
            if upstream == "waiting":
                self.waiting.add(chunk)
                continue
            held, decision = claims.try_claim(self.store, chunk, self.options.worker, self.options.attempt, now,
                                              self.max_attempts(chunk), self.options.claim_ttl,
                                              known_absent=chunk not in listed)
            if held is not None and upstream != "done" and upstream != "":
                # The chunk it reads failed for good: so does this one, without a model.
                log.error("chunk %s: %s", chunk, upstream)
                state_only(self.store, chunk, held.claim.attempt, "failed", upstream)
                claims.end(self.store, held, "failed", upstream)
                self.finished.add(chunk)
                continue
            if held is not None:
                return held
            if decision[0] in ("done", "failed", "exhausted"):
                self.finished.add(chunk)
        return None

    def _upstream_state(self, chunk: str, now: float) -> str:
        """"" for a chunk of a run reading no other step, "done" or "waiting" for its upstream chunk,
        else why the upstream chunk failed."""
        if self.upstream is None:
            return ""
        from chunkpilot.pipeline.ready import upstream_state

        state, why = upstream_state(*self.upstream, chunk, now)
        return why if state == "failed" else state


@dataclass
class WorkerStatus:
    """This launch's ``WorkerBeat``, written whenever it changes (never fatal if the store refuses)."""

    store: Store
    beat: WorkerBeat
    clock: Callable[[], float] = time.time
    _first_answer: bool = field(default=False, init=False)

    def set(self, **changes) -> None:
        self.beat = self.beat.with_(updated_at=self.clock(), **changes)
        try:
            self.store.put(layout.worker_beat(self.beat.worker, self.beat.attempt), self.beat.to_json())
        except StoreError as exc:
            log.warning("worker heartbeat not written: %s", exc)

    def first_answer(self) -> None:
        if not self._first_answer:
            self._first_answer = True
            if self.beat.first_answer_at is None:  # an earlier life of this launch may have answered first
                self.set(first_answer_at=self.clock())


def start_engine(spec: RunSpec) -> Engine:
    """The run's engine with exactly the weights it pinned (ConfigError says what is wrong)."""
    engine_options = {k: v for k, v in spec.engine_options.items() if k != "max_in_flight"}
    if loads_model(spec.engine):
        check_pinned(spec.model, spec.model_revision, spec.model_files)
        model = resolve_pinned(spec.model, spec.model_revision)
    else:  # an engine without a model still labels its answers with the run's (echo)
        model = ResolvedModel(spec.model, spec.model, spec.model_revision)
    return load_engine(spec.engine, model, engine_options, spec.task)


def in_flight_for(spec: RunSpec, engine: Engine) -> int:
    """Requests the worker keeps in the engine: the run's ``max_in_flight`` engine option if set,
    else the engine's own batch limit plus a read-ahead (``read_ahead``)."""
    given = spec.engine_options.get("max_in_flight")
    return int(given) if given else read_ahead(int(getattr(engine, "batch_size", 0) or 96))


class Worker:
    """One launch of a worker: its engine, its claims, its journal and heartbeat."""

    def __init__(self, store: Store, spec: RunSpec, options: WorkerOptions, stop: StopRequested):
        self.store, self.spec, self.options, self.stop = store, spec, options, stop
        self.job = job_name(spec.run_id, options.worker, options.attempt)
        self.journal = Journal(store, options.worker, options.attempt)
        now = time.time()
        self.earlier = earlier_beat(store, options.worker, options.attempt)
        beat = WorkerBeat(options.worker, options.attempt, "starting", now, now, devices=options.devices)
        if self.earlier is not None:  # this launch restarted in place: its counts go on
            e = self.earlier
            beat = beat.with_(started_at=e.started_at, engine_starts=e.engine_starts, first_answer_at=e.first_answer_at,
                              chunks_done=e.chunks_done, chunks_failed=e.chunks_failed, chunks_lost=e.chunks_lost,
                              splits_given=e.splits_given, splits_taken=e.splits_taken)
        self.status = WorkerStatus(store, beat)
        self.engine: Engine | None = None
        self.max_in_flight = 0
        self.checked_sources: set[int] = set()
        self.rate = 0.0  # units/s of the last chunk this launch answered: what it says when asking for a split

    def run(self) -> int:
        self.journal.start()
        self.status.set()
        try:
            code, outcome, reason = self._loop()
        except StoreError as exc:
            log.error("store unavailable, stopping so the job is retried: %s", exc)
            code, outcome, reason = EXIT_PREEMPTED, "stopped", f"store unavailable: {exc}"
        finally:
            if self.engine is not None:
                self.engine.close()
        self.journal.end(outcome, code, reason)
        self.status.set(state={EXIT_DONE: "done", EXIT_CONFIG: "failed"}.get(code, "stopped"), chunk=None, reason=reason)
        return code

    def _loop(self) -> tuple[int, str, str]:
        """Chunk after chunk on one engine. The next chunk is taken as soon as the newest has read all
        its records, so its requests fill the engine while the last ones of the chunk before finish:
        at most two chunks share the engine, and it never drains at a chunk boundary."""
        held_before = self.earlier.chunk if self.earlier is not None and self.earlier.state == "running" else None
        scanner = ClaimScanner(self.store, self.spec, self.options, take_back=held_before)
        active: list[Running] = []
        nothing_left = paused = stopped = False
        looked = 0  # chunks ended when a look found nothing to claim beside the one running (looked again once one ends)
        ended = 0
        while True:
            wants_next = not active or (len(active) < 2 and active[-1].run.all_read and looked <= ended)
            if wants_next and not (self.stop.requested or nothing_left):
                if self.store.exists(layout.CANCELLED):
                    log.info("the run is paused: taking no more chunks")
                    nothing_left = paused = True
                else:
                    # Not the chunks it answers, nor what they handed over: those are for the worker that asked.
                    busy = frozenset(c for item in active for c in (item.run.chunk, *item.run.children))
                    held = scanner.next(time.time(), busy=busy)
                    # Pipeline steps never split: chunk j of one step feeds chunk j of the next.
                    if held is None and not active and self.options.splits and not self.spec.pipeline:
                        held = self._take_split(scanner)  # idle: ask the slowest chunk for part of its range
                    if held is None and active:
                        looked = ended + 1  # nothing now; look again when the running chunk ends
                    elif held is None and scanner.waiting:
                        self._wait_for_upstream(len(scanner.waiting))
                        continue
                    elif held is None:
                        log.info("%s: nothing left to claim, and no chunk worth splitting", self.job)
                        nothing_left = True
                    else:
                        taken = self._take(held)
                        if isinstance(taken, tuple):  # the engine cannot start
                            return taken
                        if taken is not None:
                            active.append(taken)
                        continue
            if not active:
                break
            self._step(active)
            for item in list(active):
                outcome = item.run.tick()
                if outcome is not None:
                    active.remove(item)
                    ended += 1
                    stopped |= outcome is ChunkOutcome.STOPPED
                    self._ended(item, outcome, holding=active[-1].run.chunk if active else None)
        if stopped:
            return EXIT_PREEMPTED, "stopped", "stop requested"
        if self.stop.requested or paused:
            # Stopped (or the run paused) between chunks: nothing was lost, so not an interruption.
            return EXIT_PREEMPTED, "idle", "stopped holding no chunk" if self.stop.requested else "run paused"
        return EXIT_DONE, "done", ""

    def _take(self, held: claims.Held) -> "Running | tuple[int, str, str] | None":
        """Start answering a chunk just claimed: None if there is nothing to answer (done already, or
        its input changed: failed for good); the loop's return value if the engine cannot start."""
        chunk = held.claim.chunk
        guard = ClaimGuard(self.store, held, self.options.claim_ttl)
        log.info("%s: took chunk %s (attempt %d)", self.job, chunk, held.claim.attempt)
        self.journal.event("claim", chunk=chunk, chunk_attempt=held.claim.attempt)
        self.journal.flush()  # the history says which chunks this life took, even if it is killed next
        self.status.set(state="running", chunk=chunk)
        manifest = ChunkManifest.from_json(self.store.get(layout.manifest(chunk)))
        if self.store.exists(layout.done_marker(chunk)):
            guard.end("done")
            return None
        try:
            self._check_inputs(manifest)
        except InputError as exc:
            log.error("%s", exc)
            state_only(self.store, chunk, held.claim.attempt, "failed", str(exc))
            guard.end("failed", str(exc))
            self.status.set(chunks_failed=self.status.beat.chunks_failed + 1)
            return None
        if self.engine is None:
            state_only(self.store, chunk, held.claim.attempt, "starting")
            try:
                with stop_means_exit(self.stop), guard.kept_meanwhile():
                    self._start_engine()
            except StoppedWhileStarting:
                log.warning("stopped while the engine was starting: before any work started")
                guard.end("released", f"{self.job} was stopped while its engine was starting")
                return EXIT_PREEMPTED, "stopped", "stopped while the engine was starting"
            except ConfigError as exc:
                log.error("%s", exc)
                state_only(self.store, chunk, held.claim.attempt, "failed", str(exc))
                guard.end("released", f"{self.job} could not start its engine")
                return EXIT_CONFIG, "failed", str(exc)
        options = ChunkOptions(attempt=held.claim.attempt, max_in_flight=self.max_in_flight,
                               heartbeat_seconds=min(self.options.heartbeat_seconds, self.spec.commit_seconds),
                               grace_seconds=self.options.grace_seconds,
                               store_retry_seconds=self.options.store_retry_seconds)
        run = ChunkRun(self.store, self.spec, manifest, self.engine, options, self.journal, self.stop, guard,
                       on_answer=self.status.first_answer,
                       on_split=lambda child: self.status.set(splits_given=self.status.beat.splits_given + 1))
        run.begin()
        return Running(run, guard)

    def _step(self, active: list["Running"]) -> None:
        """Fill the engine from the chunks in order (the older one first), run one engine step, and
        hand each answer to the chunk it belongs to."""
        room = self.max_in_flight - sum(len(item.run.in_flight) for item in active)
        for item in active:
            if room <= 0:
                break
            try:
                room -= item.run.pump(room)
            except InputError as exc:  # an input changed under the run: this chunk cannot be answered as planned
                log.error("%s", exc)
                state_only(self.store, item.run.chunk, item.run.options.attempt, "failed", str(exc))
                item.run.failure = str(exc)
        if any(item.run.in_flight for item in active):
            for result in self.engine.step():
                owner = next((item.run for item in active if item.run.owns(result.request_id)), None)
                if owner is not None:
                    owner.deliver(result)

    def _wait_for_upstream(self, waiting: int) -> None:
        """Nothing to take now, but chunks wait for the step before: look again shortly."""
        if self.status.beat.state != "waiting":
            log.info("%s: %d chunk(s) wait for the step before; waiting", self.job, waiting)
            self.status.set(state="waiting", chunk=None)
        self.stop_wait(UPSTREAM_POLL_SECONDS)

    def stop_wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when a stop is asked for."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop.requested:
            time.sleep(0.05)

    def _ended(self, item: "Running", outcome: ChunkOutcome, holding: str | None) -> None:
        """Write a chunk run's end into its claim and the worker's heartbeat (``holding``: the chunk
        still being answered, if any)."""
        if item.run.fresh_units:
            self.rate = item.run.rate()  # what it says of its speed when it asks for a split
        beat, guard = self.status.beat, item.guard
        if outcome is ChunkOutcome.DONE:
            guard.end("done")
            self.status.set(chunks_done=beat.chunks_done + 1, chunk=holding)
        elif outcome is ChunkOutcome.FAILED:
            guard.end("failed", item.run.failure or "")
            self.status.set(chunks_failed=beat.chunks_failed + 1, chunk=holding)
        elif outcome is ChunkOutcome.STOPPED:
            guard.end("released", f"{self.job} was stopped")
        else:
            self.status.set(chunks_lost=beat.chunks_lost + 1, chunk=holding)

    def _take_split(self, scanner: ClaimScanner) -> claims.Held | None:
        """Nothing left to claim: ask the chunk with the longest time to go to split, wait a bounded
        time for its holder's answer, and claim what it handed over (or whatever else appeared);
        the next chunk if it refuses or stays silent. None when no chunk is worth asking."""
        heartbeat = min(self.options.heartbeat_seconds, self.spec.commit_seconds)
        # A holder answers at its next heartbeat: a live one within one, a silent one never. Worth
        # asking: a chunk with more to go than an answer and a claim take (at most two heartbeats).
        wait = 2 * heartbeat + self.options.split_wait_seconds
        worth = 2 * heartbeat
        asked: set[str] = set()
        others: dict[str, int] = {}  # chunks found asked by another worker, how often
        unheard = 0  # looks that found a chunk just claimed, its heartbeat not yet written
        while not self.stop.requested:
            candidates, silent = self._split_candidates(worth)
            chunk = next((c for c in candidates if c not in asked), None)
            if chunk is None:
                if not silent or unheard >= 3:
                    return None
                unheard += 1  # a chunk just taken (maybe the rest of one split for another): hear from it first
                time.sleep(heartbeat)
                continue
            if not splits.ask(self.store, chunk, self.job, self.rate, time.time()):
                # Another idle worker asked first: its answer is its to claim, but what the holder
                # keeps may be worth splitting again once it has answered. Asked again at most twice.
                others[chunk] = others.get(chunk, 0) + 1
                if others[chunk] > 2:
                    asked.add(chunk)
                self._answered(chunk, wait)
                held = scanner.next(time.time())
                if held is not None:
                    return held
                continue
            asked.add(chunk)
            log.info("%s: nothing left to claim; asked chunk %s to split", self.job, chunk)
            self.journal.event("split_asked", chunk=chunk)
            answered = self._answered(chunk, wait)
            if not answered:
                request = splits.pending(self.store, chunk)
                if request is not None and request.by == self.job:
                    splits.withdraw(self.store, chunk)
                else:
                    answered = request is None  # answered in the last instant
            held = scanner.next(time.time())
            if held is not None:
                if answered and held.claim.chunk.startswith(chunk + "_"):
                    self.status.set(splits_taken=self.status.beat.splits_taken + 1)
                return held
        return None

    def _answered(self, chunk: str, wait: float) -> bool:
        """Wait up to ``wait`` seconds for the request on ``chunk`` to be answered (gone)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self.stop.requested:
            if not self.store.exists(layout.split_request(chunk)):
                return True
            time.sleep(0.1)
        return False

    def _split_candidates(self, min_seconds: float) -> tuple[list[str], bool]:
        """Chunks held by live claims, slowest to finish first (``splits.slowest_first``), from their
        heartbeats; and whether any held chunk has no heartbeat of its current attempt yet."""
        now = time.time()
        held, claimed_at = [], {}
        for key in self.store.keys(layout.CLAIMS):
            chunk = layout.parse_claim(key)
            if chunk is None or (self.options.only is not None and chunk.split("_")[0] not in self.options.only):
                continue
            try:
                claim = claims.read_claim(self.store, chunk)[0]
            except (NotFoundError, ValueError, KeyError, TypeError):
                continue
            if claim is not None and claim.live(now) and claim.worker != self.options.worker:
                held.append(chunk)
                claimed_at[chunk] = claim
        beats, silent = [], False
        for chunk in held:
            try:
                beat = Progress.from_json(self.store.get(layout.progress(chunk)))
            except (NotFoundError, ValueError, KeyError, TypeError):
                silent = True
                continue
            silent = silent or beat.attempt != claimed_at[chunk].attempt or beat.state != "running"
            beats.append(beat)
        return splits.slowest_first(beats, now, stale_after=self.options.claim_ttl, min_seconds=min_seconds), silent

    def _check_inputs(self, manifest: ChunkManifest) -> None:
        """The chunk's inputs are the ones the run was planned on (each checked once per worker)."""
        for source in sorted({r.source for r in manifest.ranges} - self.checked_sources):
            check_pin(self.spec.inputs[source])
            self.checked_sources.add(source)

    def _start_engine(self) -> None:
        log.info("starting the %s engine (%s)", self.spec.engine, self.spec.model)
        self.engine = start_engine(self.spec)
        self.max_in_flight = in_flight_for(self.spec, self.engine)
        self.journal.event("ready")
        self.status.set(engine_starts=self.status.beat.engine_starts + 1, ready_at=time.time(),
                        max_in_flight=self.max_in_flight)
        log.info("engine ready: %d request(s) kept in flight", self.max_in_flight)


# How often a pipeline step's idle worker looks whether the step before finished another chunk.
UPSTREAM_POLL_SECONDS = float(os.environ.get("CHUNKPILOT_UPSTREAM_POLL_SECONDS", "0.5"))


def _upstream_of(store: Store, spec: RunSpec) -> tuple[Store, RunSpec] | None:
    """(store, spec) of the step run ``spec`` reads, for a pipeline step that reads one."""
    if not spec.pipeline or not spec.pipeline.get("upstream"):
        return None
    from chunkpilot.pipeline.read import open_spec

    return open_spec(open_store(store.uri.rsplit("/", 1)[0]), spec.pipeline["upstream"])


def earlier_beat(store: Store, worker: str, attempt: int) -> WorkerBeat | None:
    """This launch's heartbeat from an earlier life (SkyPilot restarts a preempted job's run command
    in place, as the same launch), or None for a first start."""
    try:
        return WorkerBeat.from_json(store.get(layout.worker_beat(worker, attempt)))
    except (NotFoundError, StoreError, ValueError, TypeError, KeyError):
        return None


class StoppedWhileStarting(Exception):
    """A stop (SIGTERM/SIGINT) came while the engine was starting: nothing to commit, so stop now."""


@contextmanager
def stop_means_exit(stop: StopRequested) -> Iterator[None]:
    """While starting an engine (a long call that cannot look at a flag), a stop raises at once
    instead of waiting for the engine; afterwards a stop asks for a graceful end again."""
    def now(signum, frame):
        stop(signum, frame)
        raise StoppedWhileStarting()

    if stop.requested:
        raise StoppedWhileStarting()
    previous = {s: signal.signal(s, now) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_worker(run_uri: str, options: WorkerOptions) -> int:
    """Run one launch of a worker to its end; returns the process exit code."""
    try:
        validate_worker_id(options.worker)
        if options.attempt < 1:
            raise ConfigError(f"--attempt must be at least 1, got {options.attempt}")
        store = open_store(run_uri)
        spec = RunSpec.from_json(store.get(layout.RUN_SPEC))
    except NotFoundError:
        log.error("no run at %s (expected %s/%s)", run_uri, run_uri, layout.RUN_SPEC)
        return EXIT_CONFIG
    except (ChunkpilotError, ValueError, KeyError) as exc:
        log.error("cannot load the run: %s", exc)
        return EXIT_CONFIG
    stop = StopRequested()
    stop.install()
    return Worker(store, spec, options, stop).run()
