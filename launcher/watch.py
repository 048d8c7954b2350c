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
from typing import Callable

from chunkpilot import layout
from chunkpilot.errors import BackendError, NotFoundError, StoreError
from chunkpilot.names import job_name
from chunkpilot.retry import call
from chunkpilot.spec import AttemptRecord, CancelMarker, ResumeAllowance
from launcher.backends.base import Backend, LaunchRequest
from launcher.lease import Lease
from launcher.observe import ChunkDetail, ChunkObservation, list_attempts, observe, read_details
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


def reconcile_once(run: OpenRun, backend: Backend, options: WatchOptions, known_done: set[str],
                   extra_attempts: dict[str, int] | None = None,
                   unfinished: set[str] | None = None) -> tuple[Decision, dict[str, ChunkObservation]]:
    """One cycle: observe, decide, then cancel, record and launch.

    ``known_done`` and ``unfinished`` carry what earlier cycles saw: done chunks are not polled
    again, and a chunk seen unfinished that is now done gets its attempt record's end (a chunk
    done before this watcher started costs no read).
    """
    unfinished = set() if unfinished is None else unfinished
    observed = observe(run.run_store, run.spec, backend, skip_poll=known_done)
    decision = decide([o.view() for o in observed.values()], policy_for(run, options, extra_attempts), time.time())
    for chunk, obs in observed.items():
        if obs.done is None:
            unfinished.add(chunk)
        elif chunk not in known_done:
            known_done.add(chunk)
            if chunk in unfinished and obs.attempts:  # seen running by this watcher: its attempt ends with the marker
                _update_record(run, chunk, obs.attempts, state="DONE", ended_at=obs.done.mtime, only_if_open=True)

    if decision.cancels:
        backend.cancel(run.spec.run_id, [job_name(run.spec.run_id, c.chunk, c.attempt) for c in decision.cancels])
        for c in decision.cancels:
            _update_record(run, c.chunk, c.attempt, cancelled_by_us=True, reason=c.reason)
    for e in decision.ended:
        _update_record(run, e.chunk, e.attempt, state=e.state.value, reason=e.reason, ended_at=time.time(), only_if_open=True)
    launch(run, backend, decision)
    return decision, observed


def launch(run: OpenRun, backend: Backend, decision: Decision) -> None:
    requests = []
    for item in decision.launches:
        name = job_name(run.spec.run_id, item.chunk, item.attempt)
        record = AttemptRecord(item.chunk, item.attempt, backend.name, name, launched_at=time.time())
        if not run.run_store.put_if_absent(layout.attempt_record(item.chunk, item.attempt), record.to_json()):
            log.warning("attempt %s was already claimed by another launcher; not launching it", name)
            continue
        requests.append(LaunchRequest(run.spec, run.run_uri, item.chunk, item.attempt, name))
    if not requests:
        return
    job_ids = backend.launch(requests)
    for req, job_id in zip(requests, job_ids):
        log.info("launched %s (job %s)", req.name, job_id)
        if job_id is not None:
            _update_record(run, req.chunk, req.attempt, job_id=str(job_id), state="LAUNCHED")


def _update_record(run: OpenRun, chunk: str, attempt: int, only_if_open: bool = False, **changes) -> None:
    key = layout.attempt_record(chunk, attempt)
    try:
        record = AttemptRecord.from_json(run.run_store.get(key))
    except NotFoundError:
        return
    if only_if_open and record.ended_at is not None:
        return
    run.run_store.put(key, record.with_(**changes).to_json())


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


def look(run: OpenRun, decision: Decision, observed: dict[str, ChunkObservation],
         cache: dict[str, ChunkDetail] | None = None) -> StatusReport:
    """The status report of one observation, reading the few heartbeats and markers it needs."""
    details = read_details(run.run_store, chunks_needing_detail(observed, decision), observed, cache)
    return summarize(run.spec, observed, decision, time.time(), details)


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
    details: dict[str, ChunkDetail] = {}
    max_error_rate = run.spec.max_error_rate if options.max_error_rate is None else options.max_error_rate
    try:
        resumed = resume(run)
        if resumed is not None and on_resume:
            on_resume(resumed)
        extra = run.allowance().extra_attempts
        while True:
            try:
                decision, observed = reconcile_once(run, backend, options, known_done, extra, unfinished)
                report = look(run, decision, observed, details)
            except (StoreError, BackendError) as exc:  # transient: the store's or backend's retries gave up
                log.warning("%s; retrying next cycle", exc)
                time.sleep(options.interval)
                continue
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
