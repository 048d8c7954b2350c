"""Drive every step of a pipeline in one reconcile loop, each step run as ``launcher watch`` would.

A step's workers are launched once its upstream step has a chunk done (or has finished): they
then take chunk j as soon as the step before has finished chunk j (``chunkpilot.pipeline.ready``),
so steps overlap chunk by chunk. Each step keeps its own lease, attempts and error budget; a step
paused for its error budget pauses the steps after it (they would wait on it forever).
A reused step whose run another watcher holds is only looked at, never driven twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from chunkpilot.errors import BackendError, LeaseHeldError, StoreError
from chunkpilot.pipeline.documents import PipelineRun
from chunkpilot.control.backends import make_backend
from chunkpilot.control.lease import Lease
from chunkpilot.control.runs import OpenRun, open_run
from chunkpilot.control.status import StatusReport
from chunkpilot.control.watch import (
    LookCache,
    WatchOptions,
    jobs_active,
    attempt_book,
    budget_message,
    budget_sample,
    look,
    pause,
    reconcile_once,
    resume,
)
from chunkpilot.control.reconcile import error_budget_exceeded

log = logging.getLogger("chunkpilot.watch")


@dataclass
class StepDriver:
    """One step run as the pipeline's watcher drives it."""

    name: str
    run: OpenRun
    lease: Lease | None = None  # None: another watcher drives it; only looked at
    known_done: set[str] = field(default_factory=set)
    cache: LookCache = field(default_factory=LookCache)
    started: bool = False
    finished: bool = False
    report: StatusReport | None = None


@dataclass
class PipelineWatchResult:
    reports: dict[str, StatusReport]
    failed_step: str | None = None
    over_budget: str | None = None


def watch_pipeline(store_uri: str, doc: PipelineRun, options: WatchOptions,
                   on_cycle: Callable[[dict[str, StatusReport]], None] | None = None) -> PipelineWatchResult:
    """Reconcile every step until all are finished, or one is paused by its error budget."""
    drivers = [StepDriver(s.name, open_run(store_uri, s.run or "")) for s in doc.model_steps]
    backends = {}
    try:
        for d in drivers:
            lease = Lease(d.run.run_store, ttl=options.lease_ttl)
            try:
                lease.acquire()
                d.lease = lease
                resume(d.run, options.max_attempts)
            except LeaseHeldError:
                log.warning("step %s (%s) is driven by another watcher: only looking at it", d.name, d.run.spec.run_id)
            d.cache.book = attempt_book(d.run, backends.setdefault(d.name, make_backend(d.run.spec, store_uri)))
        while True:
            for k, d in enumerate(drivers):
                if d.finished:
                    continue
                upstream = drivers[k - 1] if k else None
                d.started = d.started or upstream is None or upstream.finished or bool(upstream.known_done)
                if not d.started:
                    continue
                try:
                    _cycle(d, backends[d.name], options)
                except (StoreError, BackendError) as exc:
                    log.warning("step %s: %s; retrying next cycle", d.name, exc)
                    continue
                report = d.report
                assert report is not None
                if _starved(d, upstream) and d.lease is not None:
                    pause(d.run, backends[d.name], f"the chunks it reads failed in step {upstream.name}")
                    d.finished = True
                    continue
                records, errors = budget_sample(report)
                rate = d.run.spec.max_error_rate if options.max_error_rate is None else options.max_error_rate
                if error_budget_exceeded(records, errors, rate, report.totals["finished"]):
                    message = f"step {d.name}: {budget_message(report, records, errors, rate)}"
                    for later in drivers[k:]:
                        if not later.finished and later.lease is not None:
                            pause(later.run, backends[later.name], f"error budget exceeded: {message}")
                    return PipelineWatchResult(_reports(drivers), d.name, message)
            if on_cycle:
                on_cycle(_reports(drivers))
            if all(d.finished for d in drivers):
                failed = next((d.name for d in drivers if d.report and d.report.totals["states"].get("FAILED")), None)
                return PipelineWatchResult(_reports(drivers), failed)
            time.sleep(options.interval)
            for d in drivers:
                if d.lease is not None and not d.finished:
                    d.lease.renew()
    finally:
        for d in drivers:
            if d.cache.book is not None:
                d.cache.book.flush(force=True)
            if d.lease is not None:
                try:
                    d.lease.release()
                except StoreError as exc:
                    log.warning("could not release the lease of %s (it will expire): %s", d.run.spec.run_id, exc)


def _cycle(d: StepDriver, backend, options: WatchOptions) -> None:
    """One look at a step (and, when this watcher holds its lease, one reconcile)."""
    if d.lease is not None:
        decision, observed = reconcile_once(d.run, backend, options, d.known_done, book=d.cache.book)
        d.cache.book.flush()
    else:
        from chunkpilot.control.observe import observe
        from chunkpilot.control.watch import decide_run

        observed = observe(d.run.run_store, d.run.spec, backend, known_done=d.known_done)
        decision = decide_run(d.run, observed, options)
        d.known_done.update(c for c, o in observed.items() if o.done is not None)
    d.report = look(d.run, decision, observed, d.cache)
    d.finished = decision.finished and not jobs_active(observed)


def _starved(d: StepDriver, upstream: StepDriver | None) -> bool:
    """Whether every chunk of ``d`` not final reads a chunk the finished step before failed: its
    workers would wait for it forever."""
    if upstream is None or not upstream.finished or upstream.report is None or d.report is None:
        return False
    failed = {r.chunk for r in upstream.report.rows if r.state == "FAILED"}
    left = {r.chunk for r in d.report.rows if r.state not in ("DONE", "FAILED", "CANCELLED")}
    return bool(left) and left <= failed


def _reports(drivers: list[StepDriver]) -> dict[str, StatusReport]:
    return {d.name: d.report for d in drivers if d.report is not None}
