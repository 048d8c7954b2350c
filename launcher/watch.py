"""The reconcile loop: observe, decide, act, until every chunk is done or has given up.

It keeps no state outside the store: kill it anywhere, start it again, and it
carries on. Each attempt is claimed by creating ``jobs/<chunk>/a<n>.json`` with
put-if-absent *before* the job is launched, so no attempt is ever launched twice,
and a lease stops a second watcher.

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

from chunkpilot import layout
from chunkpilot.errors import BackendError, StoreError
from chunkpilot.names import job_name
from chunkpilot.retry import call
from chunkpilot.spec import AttemptRecord, CancelMarker, ResumeAllowance
from launcher.attempts import AttemptBook, list_lives, lives_worth_reading
from launcher.backends.base import Backend, LaunchRequest
from launcher.cost import run_cost
from launcher.lease import Lease
from launcher.observe import DETAIL_READS, ChunkDetail, ChunkObservation, list_attempts, observe, read_details
from launcher.pricing import Price
from launcher.reconcile import Decision, Policy, decide, error_budget_exceeded
from launcher.runs import OpenRun
from launcher.status import StatusReport, chunks_needing_detail, summarize, top_codes

log = logging.getLogger("chunkpilot.watch")


@dataclass(frozen=True)
class WatchOptions:
    max_attempts: int | None = None  # None: the run's own
    interval: float = field(default_factory=lambda: float(os.environ.get("CHUNKPILOT_POLL_SECONDS", "5")))
    stuck_seconds: float = 0.0
    missing_grace_seconds: float = 60.0
    lease_ttl: float = 120.0
    max_error_rate: float | None = None  # None: the run's own


def policy_for(run: OpenRun, options: WatchOptions, extra_attempts: dict[str, int] | None = None) -> Policy:
    return Policy(
        max_attempts=options.max_attempts or run.spec.max_attempts,
        parallel=run.spec.parallel,
        stuck_seconds=options.stuck_seconds,
        missing_grace_seconds=options.missing_grace_seconds,
        run_cancelled=run.cancelled,
        extra_attempts=dict(extra_attempts if extra_attempts is not None else run.allowance().extra_attempts),
    )


def attempt_book(run: OpenRun, backend: Backend) -> AttemptBook:
    """The run's attempt records as a watcher keeps them; jobs on a cloud are priced from SkyPilot's catalog."""
    catalog = None
    if backend.name == "sky":
        from launcher.backends.sky_sdk import catalog_price

        catalog = catalog_price
    return AttemptBook(run.run_store, run.spec, catalog)


def reconcile_once(run: OpenRun, backend: Backend, options: WatchOptions, known_done: set[str],
                   extra_attempts: dict[str, int] | None = None, unfinished: set[str] | None = None,
                   book: AttemptBook | None = None) -> tuple[Decision, dict[str, ChunkObservation]]:
    """One cycle: observe, decide, then cancel, record and launch.

    ``known_done`` and ``unfinished`` carry what earlier cycles saw: done chunks are not polled
    again, and a chunk seen unfinished that is now done gets its attempt record's end (a chunk
    done before this watcher started costs no read). What the backend says about each job
    it was asked about goes into the attempt's record (``AttemptBook.note_job``).
    """
    unfinished = set() if unfinished is None else unfinished
    book = book or attempt_book(run, backend)
    observed = observe(run.run_store, run.spec, backend, skip_poll=known_done)
    decision = decide([o.view() for o in observed.values()], policy_for(run, options, extra_attempts), time.time())
    for chunk, obs in observed.items():
        if obs.job is not None and obs.attempts:
            book.note_job(chunk, obs.attempts, obs.job)
        if obs.done is None:
            unfinished.add(chunk)
        elif chunk not in known_done:
            known_done.add(chunk)
            if chunk in unfinished and obs.attempts:  # seen running by this watcher: its attempt ends with the marker
                book.update(chunk, obs.attempts, state="DONE", ended_at=obs.done.mtime, only_if_open=True)

    if decision.cancels:
        backend.cancel(run.spec.run_id, [job_name(run.spec.run_id, c.chunk, c.attempt) for c in decision.cancels])
        for c in decision.cancels:
            book.update(c.chunk, c.attempt, cancelled_by_us=True, reason=c.reason)
    for e in decision.ended:
        job = observed[e.chunk].job if e.chunk in observed else None
        ended_at = job.ended_at if job is not None and job.ended_at is not None else time.time()
        book.update(e.chunk, e.attempt, state=e.state.value, reason=e.reason, ended_at=ended_at, only_if_open=True)
    launch(run, backend, decision, book)
    return decision, observed


def launch(run: OpenRun, backend: Backend, decision: Decision, book: AttemptBook | None = None) -> None:
    book = book or attempt_book(run, backend)
    requests = []
    for item in decision.launches:
        name = job_name(run.spec.run_id, item.chunk, item.attempt)
        record = AttemptRecord(item.chunk, item.attempt, backend.name, name, launched_at=time.time())
        if run.spec.price_per_hour is not None:  # the user's price needs no resources: priced from the start
            record = record.with_(price_per_hour=run.spec.price_per_hour,
                                  on_demand_per_hour=run.spec.on_demand_price_per_hour, price_source="--price-per-hour")
        if not run.run_store.put_if_absent(layout.attempt_record(item.chunk, item.attempt), record.to_json()):
            log.warning("attempt %s was already claimed by another launcher; not launching it", name)
            continue
        book.created(record)
        requests.append(LaunchRequest(run.spec, run.run_uri, item.chunk, item.attempt, name))
    if not requests:
        return
    job_ids = backend.launch(requests)
    for req, job_id in zip(requests, job_ids):
        log.info("launched %s (job %s)", req.name, job_id)
        if job_id is not None:
            book.update(req.chunk, req.attempt, job_id=str(job_id), state="LAUNCHED")


# -- pausing and resuming -----------------------------------------------------------


def pause(run: OpenRun, backend: Backend, reason: str) -> int:
    """Pause the run: mark it, then ask its jobs to stop. Committed output stays; ``watch`` resumes.

    Returns how many jobs were asked to stop.
    """
    attempts = {chunk: attempt for chunk, (attempt, _) in list_attempts(run.run_store).items()}
    run.run_store.put(layout.CANCELLED, CancelMarker(reason, time.time(), attempts).to_json())
    names = [job_name(run.spec.run_id, chunk, attempt) for chunk, attempt in sorted(attempts.items())]
    backend.cancel(run.spec.run_id, names)
    return len(names)


def resume(run: OpenRun) -> CancelMarker | None:
    """Resume a paused run (the caller holds the lease): the attempts the pause cancelled are given
    back, then the pause marker goes. Returns the marker, or None if the run was not paused."""
    marker = run.cancel_marker()
    if marker is None:
        return None
    extra = Counter(run.allowance().extra_attempts)
    extra.update(marker.attempts.keys())
    run.run_store.put(layout.RESUMED, ResumeAllowance(dict(extra)).to_json())
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


def look(run: OpenRun, decision: Decision, observed: dict[str, ChunkObservation], cache: LookCache | None = None,
         price: Price | None = None, detail_reads: int = DETAIL_READS) -> StatusReport:
    """The status report of one observation, reading the few heartbeats and markers it needs, and
    what its cost needs: every attempt record (ended ones once per watcher) and the histories
    of chunks that were interrupted. ``price`` overrides the records' prices."""
    cache = cache or LookCache()
    details = read_details(run.run_store, chunks_needing_detail(observed, decision), observed, cache.details,
                           limit=detail_reads)
    now = time.time()
    report = summarize(run.spec, observed, decision, now, details)
    book = cache.book = cache.book or AttemptBook(run.run_store, run.spec)
    parallel = max(1, run.run_store.parallel_reads)
    records = book.all(listed_attempts(observed), parallel, getattr(observed, "ledger", None))
    done = {c for c, o in observed.items() if o.done is not None}
    keys = list_lives(run.run_store)
    worth = lives_worth_reading(keys, records, done)
    lives = book.lives_of(keys, parallel, wanted=worth.__contains__, running=open_latest_lives(keys, records, done))
    cost = run_cost(records, lives, now, report.totals["eta_seconds"], report.totals["finished"], price)
    report.cost = cost
    report.totals["cost"] = cost.to_dict()
    return report


def open_latest_lives(keys: Iterable[tuple[str, int, int]], records: list[AttemptRecord], done: set[str]) -> set:
    """Each unfinished chunk's latest worker life, when its attempt has not ended."""
    latest: dict[str, tuple[str, int, int]] = {}
    for key in keys:
        latest[key[0]] = max(latest.get(key[0], key), key)
    open_attempts = {(r.chunk, r.attempt) for r in records if r.ended_at is None}
    return {k for c, k in latest.items() if c not in done and (k[0], k[1]) in open_attempts}


def listed_attempts(observed: dict[str, ChunkObservation]) -> dict[tuple[str, int], float]:
    """(chunk, attempt) -> its record's mtime, for every record the observation's listing showed."""
    return {(c, a): mtime for c, o in observed.items() for a, mtime in o.attempt_mtimes.items()}


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
        resumed = resume(run)
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
            if decision.finished and not _any_active(observed, known_done):
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


def _any_active(observed: dict[str, ChunkObservation], known_done: set[str]) -> bool:
    """A job still running (e.g. on a cancelled run, or a chunk that gave up) keeps watch going."""
    return any(o.job is not None and o.job.status.active for c, o in observed.items() if c not in known_done)
