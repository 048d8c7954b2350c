"""The reconcile loop: observe, decide, act, until every chunk is done or has given up.

It keeps no state outside the store: kill it anywhere, start it again, and it
carries on. Each launch of a worker is claimed by creating ``jobs/<worker>/a<n>.json``
with put-if-absent *before* the job is launched, so no launch ever happens twice,
and a lease stops a second watcher. Workers claim chunks themselves
(``chunkpilot.claims``); the watcher keeps enough of them going and hands back the
claims of jobs it sees end.

A paused run (``launcher cancel``, or an exhausted error budget) is resumed by the
next ``watch``: the pause marker goes, and the attempts it cancelled are given back.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from chunkpilot import claims, layout
from chunkpilot.errors import BackendError, StoreError
from chunkpilot.names import job_name
from chunkpilot.retry import call
from chunkpilot.spec import AttemptRecord, CancelMarker, ResumeAllowance
from chunkpilot.control.attempts import AttemptBook, list_lives, lives_worth_reading
from chunkpilot.control.backends.base import Backend, JobStatus, LaunchRequest
from chunkpilot.control.cost import run_cost
from chunkpilot.control.lease import Lease
from chunkpilot.control.observe import DETAIL_READS, ChunkDetail, Observed, list_attempts, observe, read_details, read_worker_beats
from chunkpilot.control.pricing import Price
from chunkpilot.control.reconcile import ChunkState, Decision, Policy, decide, error_budget_exceeded
from chunkpilot.control.runs import OpenRun
from chunkpilot.control.status import StatusReport, chunks_needing_detail, summarize, top_codes, worker_rows

log = logging.getLogger("chunkpilot.watch")


@dataclass(frozen=True)
class WatchOptions:
    max_attempts: int | None = None  # None: the run's own (or what an earlier watch set)
    interval: float = field(default_factory=lambda: float(os.environ.get("CHUNKPILOT_POLL_SECONDS", "5")))
    missing_grace_seconds: float = 60.0
    lease_ttl: float = 120.0
    max_error_rate: float | None = None  # None: the run's own


def policy_for(run: OpenRun, options: WatchOptions, extra_attempts: dict[str, int] | None = None,
               launch_batch: int | None = None) -> Policy:
    """The reconcile policy of ``run``; ``launch_batch``: the backend's bound on launches per cycle."""
    allowance = run.allowance()
    return Policy(
        max_launches_per_cycle=launch_batch,
        max_attempts=options.max_attempts or allowance.max_attempts or run.spec.max_attempts,
        workers=run.spec.workers or 1,
        missing_grace_seconds=options.missing_grace_seconds,
        run_cancelled=run.cancelled,
        extra_attempts=dict(extra_attempts if extra_attempts is not None else allowance.extra_attempts),
    )


def decide_run(run: OpenRun, observed, options: WatchOptions, extra_attempts: dict[str, int] | None = None,
               now: float | None = None, launch_batch: int | None = None) -> Decision:
    """The decision for one observation of ``run``."""
    return decide(observed.chunk_views(), observed.worker_views(),
                  policy_for(run, options, extra_attempts, launch_batch), time.time() if now is None else now)


def attempt_book(run: OpenRun, backend: Backend) -> AttemptBook:
    """The run's attempt records as a watcher keeps them; jobs on a cloud are priced from SkyPilot's catalog."""
    catalog = None
    if backend.name == "sky":
        from chunkpilot.control.backends.sky_sdk import catalog_price

        catalog = catalog_price
    return AttemptBook(run.run_store, run.spec, catalog)


def reconcile_once(run: OpenRun, backend: Backend, options: WatchOptions, known_done: set[str],
                   extra_attempts: dict[str, int] | None = None, unfinished: set[str] | None = None,
                   book: AttemptBook | None = None) -> tuple[Decision, Observed]:
    """One cycle: observe, decide, then cancel, release, record and launch.

    ``known_done`` carries the chunks earlier cycles saw done: their claims are not read again.
    What the backend says about each job it was asked about goes into the launch's record
    (``AttemptBook.note_job``). ``unfinished`` is kept for callers that track it.
    """
    book = book or attempt_book(run, backend)
    observed = observe(run.run_store, run.spec, backend, known_done=known_done)
    decision = decide_run(run, observed, options, extra_attempts, launch_batch=getattr(backend, "launch_batch", None))
    for slot, obs in observed.workers.items():
        if obs.job is not None and obs.attempts:
            book.note_job(slot, obs.attempts, obs.job)
    for chunk, obs in observed.items():
        if obs.done is not None:
            known_done.add(chunk)
        elif unfinished is not None:
            unfinished.add(chunk)

    if decision.cancels:
        backend.cancel(run.spec.run_id, [job_name(run.spec.run_id, c.slot, c.attempt) for c in decision.cancels])
        for c in decision.cancels:
            book.update(c.slot, c.attempt, cancelled_by_us=True, reason=c.reason)
    for r in decision.releases:
        if claims.release_for_gone_job(run.run_store, r.chunk, r.slot, r.attempt, r.reason):
            log.info("chunk %s handed back: %s", r.chunk, r.reason)
    for e in decision.ended:
        job = observed.workers[e.slot].job if e.slot in observed.workers else None
        ended_at = job.ended_at if job is not None and job.ended_at is not None else time.time()
        book.update(e.slot, e.attempt, state=e.state.value, reason=e.reason, ended_at=ended_at, only_if_open=True)
    launch(run, backend, decision, book)
    return decision, observed


def launch(run: OpenRun, backend: Backend, decision: Decision, book: AttemptBook | None = None) -> None:
    book = book or attempt_book(run, backend)
    requests = []
    for item in decision.launches:
        name = job_name(run.spec.run_id, item.slot, item.attempt)
        record = AttemptRecord(item.slot, item.attempt, backend.name, name, launched_at=time.time())
        if run.spec.price_per_hour is not None:  # the user's price needs no resources: priced from the start
            record = record.with_(price_per_hour=run.spec.price_per_hour,
                                  on_demand_per_hour=run.spec.on_demand_price_per_hour, price_source="--price-per-hour")
        if not run.run_store.put_if_absent(layout.attempt_record(item.slot, item.attempt), record.to_json()):
            log.warning("launch %s was already made by another launcher; not launching it", name)
            continue
        book.created(record)
        requests.append(LaunchRequest(run.spec, run.run_uri, item.slot, item.attempt, name))
    if not requests:
        return
    job_ids = backend.launch(requests)
    for req, job_id in zip(requests, job_ids):
        log.info("launched %s (job %s)", req.name, job_id)
        if job_id is not None:
            book.update(req.worker, req.attempt, job_id=str(job_id), state="LAUNCHED")


# -- pausing and resuming -----------------------------------------------------------


def pause(run: OpenRun, backend: Backend, reason: str) -> int:
    """Pause the run: mark it, then ask its jobs to stop. Committed output stays; ``watch`` resumes.

    The marker lists each worker's latest launch and each held chunk's attempt: those the
    pause cuts short are given back when the run resumes. Returns how many jobs were asked to stop.
    """
    launches = {slot: attempt for slot, (attempt, _) in list_attempts(run.run_store).items()}
    observed = observe(run.run_store, run.spec, backend)
    held = {c: o.claim.attempt for c, o in observed.items()
            if o.claim is not None and o.done is None and o.claim.live(time.time())}
    active = {slot: w.attempts for slot, w in observed.workers.items()  # running, or launched and not seen yet
              if w.job is None or w.job.status.active or w.job.status is JobStatus.MISSING}
    run.run_store.put(layout.CANCELLED, CancelMarker(reason, time.time(), {**active, **held}).to_json())
    names = [job_name(run.spec.run_id, slot, attempt) for slot, attempt in sorted(launches.items())]
    backend.cancel(run.spec.run_id, names)
    return len(active)


def resume(run: OpenRun, max_attempts: int | None = None) -> CancelMarker | None:
    """Resume a paused run (the caller holds the lease): the attempts the pause cancelled are given
    back, then the pause marker goes; ``max_attempts`` (``watch --max-attempts``) is written for
    the workers to apply. Returns the marker, or None if the run was not paused."""
    marker = run.cancel_marker()
    allowance = run.allowance()
    if marker is None:
        if max_attempts is not None and max_attempts != allowance.max_attempts:
            run.run_store.put(layout.RESUMED, ResumeAllowance(allowance.extra_attempts, max_attempts).to_json())
        return None
    extra = Counter(allowance.extra_attempts)
    extra.update(marker.attempts.keys())
    run.run_store.put(layout.RESUMED, ResumeAllowance(dict(extra), max_attempts or allowance.max_attempts).to_json())
    run.run_store.delete(layout.CANCELLED)
    return marker


# -- the loop ---------------------------------------------------------------------------


@dataclass
class WatchResult:
    decision: Decision
    report: StatusReport
    over_budget: str | None = None  # the error budget was exceeded: what to tell the user
    paused: bool = False  # ... and the run was paused for it (jobs asked to stop)
    resumed_from: CancelMarker | None = None


@dataclass
class LookCache:
    """What a watcher keeps between looks: final details, and attempt records and worker lives (its book)."""

    details: dict[str, ChunkDetail] = field(default_factory=dict)
    book: AttemptBook | None = None
    beats: dict = field(default_factory=dict)  # final worker heartbeats


def look(run: OpenRun, decision: Decision, observed: Observed, cache: LookCache | None = None,
         price: Price | None = None, detail_reads: int = DETAIL_READS) -> StatusReport:
    """The status report of one observation, reading the few heartbeats and markers it needs, and
    what its cost needs: every attempt record (ended ones once per watcher) and the histories
    of chunks that were interrupted. ``price`` overrides the records' prices."""
    cache = cache or LookCache()
    details = read_details(run.run_store, chunks_needing_detail(observed, decision), observed, cache.details,
                           limit=detail_reads)
    now = time.time()
    beats = read_worker_beats(run.run_store, cache.beats)
    report = summarize(run.spec, observed, decision, now, details)
    book = cache.book = cache.book or AttemptBook(run.run_store, run.spec)
    parallel = max(1, run.run_store.parallel_reads)
    records = settle_ended(book, book.all(listed_attempts(observed), parallel, getattr(observed, "ledger", None)),
                           observed, decision, now)
    if not any(w.job is not None and w.job.status.active for w in observed.workers.values()):
        report.totals["eta_seconds"] = None  # nothing runs: no ETA, no projection
    done: set[str] = set()  # histories are a worker slot's: no slot is ever "done" as a chunk is
    keys = list_lives(run.run_store)
    worth = lives_worth_reading(keys, records, done)
    lives = book.lives_of(keys, parallel, wanted=worth.__contains__, running=open_latest_lives(keys, records, done))
    launched = {(r.chunk, r.attempt): r.launched_at for r in records}
    report.workers = worker_rows(observed, decision, beats, launched)
    report.totals["workers"] = len(report.workers)
    report.totals["engine_starts"] = sum(w.engine_starts for w in report.workers)
    first_answers = {k: b.first_answer_at for k, b in beats.items() if b.first_answer_at is not None}
    cost = run_cost(records, lives, now, report.totals["eta_seconds"], report.totals["finished"], price, first_answers)
    report.cost = cost
    report.totals["cost"] = cost.to_dict()
    return report


def settle_ended(book: AttemptBook, records: list[AttemptRecord], observed: Observed, decision: Decision,
                 now: float) -> list[AttemptRecord]:
    """Every launch the backend reports ended but whose record has no end gets it now, whoever
    looks (``AttemptBook.settle``): so a run nobody watches stops accruing cost when its jobs end."""
    ended = {(e.slot, e.attempt): e.reason for e in decision.ended}
    out = []
    for r in records:
        w = observed.workers.get(r.chunk)
        job = w.job if w is not None and w.attempts == r.attempt else None
        if r.ended_at is None and job is not None and not job.status.active and job.status is not JobStatus.MISSING:
            r = book.settle(r, job, ended.get((r.chunk, r.attempt), job.detail), now)
        out.append(r)
    return out


def open_latest_lives(keys: Iterable[tuple[str, int, int]], records: list[AttemptRecord], done: set[str]) -> set:
    """Each unfinished chunk's latest worker life, when its attempt has not ended."""
    latest: dict[str, tuple[str, int, int]] = {}
    for key in keys:
        latest[key[0]] = max(latest.get(key[0], key), key)
    open_attempts = {(r.chunk, r.attempt) for r in records if r.ended_at is None}
    return {k for c, k in latest.items() if c not in done and (k[0], k[1]) in open_attempts}


def listed_attempts(observed) -> dict[tuple[str, int], float]:
    """(slot, launch) -> its record's mtime, for every record the observation's listing showed."""
    return {(s, a): mtime for s, w in observed.workers.items() for a, mtime in w.attempt_mtimes.items()}


def budget_sample(report: StatusReport) -> tuple[int, int]:
    """(records, error records) the error budget is judged on: the done chunks' while the run goes
    on, every chunk's once it has finished. Mid-chunk counts would be biased — a record that fails
    fails at once, while its neighbours are still generating — so they wait for the chunk's end;
    a chunk failing wholesale stops itself early anyway (the worker's fail-fast)."""
    if report.totals["finished"]:
        return report.totals["records_done"], report.totals["errors"]
    done = [r for r in report.rows if r.state == "DONE"]
    return sum(r.records_done for r in done), sum(r.errors for r in done)


def budget_message(report: StatusReport, records: int, errors: int, max_error_rate: float) -> str:
    codes = top_codes(report.totals["error_codes"]) or "codes not read yet"
    where = "" if report.totals["finished"] else " in finished chunks"
    return (f"{errors} of {records} records{where} failed ({100 * errors / records:.1f}%), past the error "
            f"budget of {100 * max_error_rate:g}% (--max-error-rate); mostly: {codes}")


def watch(
    run: OpenRun,
    backend: Backend,
    options: WatchOptions,
    on_cycle: Callable[[StatusReport], None] | None = None,
    on_resume: Callable[[CancelMarker], None] | None = None,
) -> WatchResult:
    """Drive the run until it is finished, or pause it when its error budget runs out."""
    lease = Lease(run.run_store, ttl=options.lease_ttl)
    lease.acquire()
    known_done: set[str] = set()
    unfinished: set[str] = set()
    cache = LookCache(book=attempt_book(run, backend))
    max_error_rate = run.spec.max_error_rate if options.max_error_rate is None else options.max_error_rate
    try:
        resumed = resume(run, options.max_attempts)
        if resumed is not None and on_resume:
            on_resume(resumed)
        extra = run.allowance().extra_attempts
        while True:
            try:
                decision, observed = reconcile_once(run, backend, options, known_done, extra, unfinished, cache.book)
                report = look(run, decision, observed, cache)
            except (StoreError, BackendError) as exc:  # transient: the store's or backend's retries gave up
                log.warning("%s; retrying next cycle", exc)
                time.sleep(options.interval)
                continue
            cache.book.flush()
            if on_cycle:
                on_cycle(report)
            totals = report.totals
            records, errors = budget_sample(report)
            if error_budget_exceeded(records, errors, max_error_rate, totals["finished"]):
                message = budget_message(report, records, errors, max_error_rate)
                if totals["finished"]:
                    return WatchResult(decision, report, over_budget=message, resumed_from=resumed)
                pause(run, backend, f"error budget exceeded: {message}")
                return WatchResult(decision, report, over_budget=message, paused=True, resumed_from=resumed)
            if decision.finished and not jobs_active(observed):
                return WatchResult(decision, report, resumed_from=resumed)
            backend.wait(options.interval)
            _renew(lease)
    finally:
        cache.book.flush(force=True)
        try:
            lease.release()
        except StoreError as exc:
            log.warning("could not release the lease (it will expire): %s", exc)


def _renew(lease: Lease) -> None:
    """Renew the lease; a store outage is retried, losing the lease to another watcher is not."""
    call(lease.renew, lambda exc: isinstance(exc, StoreError), attempts=6, first=0.5, cap=8.0, log=log,
         what="lease renewal")


def jobs_active(observed) -> bool:
    """A job still running (asked to stop: the run finished or was paused) keeps watch going
    until it has ended, so its record gets its end."""
    return any(w.job is not None and w.job.status.active for w in observed.workers.values())


@dataclass(frozen=True)
class WatchOutcome:
    """How a watch ended, for a person or a caller: what failed (chunk -> reason), what was
    cancelled, and the error budget's message when it ran out (``paused``: the run was paused)."""

    failed: dict[str, str]
    cancelled: list[str]
    over_budget: str | None
    paused: bool

    @property
    def ok(self) -> bool:
        return not (self.failed or self.cancelled or self.over_budget)


def outcome(result: WatchResult) -> WatchOutcome:
    states = result.decision.states
    failed = {r.chunk: r.reason for r in result.report.rows if states.get(r.chunk) is ChunkState.FAILED}
    cancelled = [c for c, s in states.items() if s is ChunkState.CANCELLED]
    return WatchOutcome(failed, cancelled, result.over_budget, result.paused)


def status_of(run: OpenRun, backend: Backend, price: Price | None = None) -> StatusReport:
    """One look at the run, as ``launcher status`` shows it: observe, decide (nothing is acted on), report."""
    observed = observe(run.run_store, run.spec, backend)
    return look(run, decide_run(run, observed, WatchOptions()), observed, price=price)


def status_document(run: OpenRun, report: StatusReport, paused: CancelMarker | None) -> dict:
    """``launcher status --json``: the report, why the run is paused (or null) and its model."""
    import dataclasses

    data = report.to_dict()
    data["paused"] = None if paused is None else dataclasses.asdict(paused)
    data["model"] = {"engine": run.spec.engine, "name": run.spec.model, "revision": run.spec.model_revision,
                     "pinned": not run.spec.model_revision.startswith("unpinned:")}
    return data
