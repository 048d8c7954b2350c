"""The loop that moves every batch along: one thread, one pass over the active batches per cycle.

Each pass reads each active batch from the store, asks ``lifecycle.next_step`` what to do, and
does it: validate and plan (``planning``), reconcile its run (``chunkpilot.control.watch.reconcile_once``,
the same cycle ``launcher watch`` runs), pause it (cancel, expiry), or collect its result
files (``results``). What it keeps in memory — a lease, a backend and an attempt book per run —
is a cache: a server killed anywhere and started again rebuilds it from the store and carries on.
One batch's failure is logged and retried next pass; it never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from chunkpilot.errors import ChunkpilotError, LeaseHeldError, StoreError
from chunkpilot.control.attempts import AttemptBook
from chunkpilot.control.backends import Backend, make_backend
from chunkpilot.control.lease import Lease
from chunkpilot.control.reconcile import ChunkState
from chunkpilot.control.runs import OpenRun, open_run
from chunkpilot.control.serve import lifecycle
from chunkpilot.control.serve.config import ServeConfig
from chunkpilot.control.serve.objects import (BATCH_PREFIX, CANCELLED, CANCELLING, FILE_PREFIX, FINALIZING, IN_PROGRESS,
                                    ApiError, BatchRecord, LineError, new_id)
from chunkpilot.control.serve.planning import start_run
from chunkpilot.control.serve.results import store_results
from chunkpilot.control.serve.state import ServeState
from chunkpilot.control.serve.validate import validate_lines
from chunkpilot.control.status import summarize
from chunkpilot.control.watch import WatchOptions, attempt_book, jobs_active, pause, reconcile_once

log = logging.getLogger("chunkpilot.serve")


@dataclass
class Driver:
    """What the scheduler keeps between cycles for one batch's run (all of it can be rebuilt)."""

    run: OpenRun
    backend: Backend
    book: AttemptBook
    lease: Lease
    known_done: set[str] = field(default_factory=set)
    leased: bool = False


class Scheduler:
    def __init__(self, state: ServeState, config: ServeConfig, clock: Callable[[], float] = time.time):
        self.state = state
        self.config = config
        self.clock = clock
        self.drivers: dict[str, Driver] = {}
        self.watch_options = WatchOptions(interval=config.poll_seconds)

    # -- the loop ------------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.config.poll_seconds)
        for batch_id in list(self.drivers):
            self._drop(batch_id)

    def step(self) -> None:
        """One pass over every active batch."""
        try:
            active = list(self.state.active_batches())
        except StoreError as exc:
            log.warning("cannot list active batches (%s); retrying next cycle", exc)
            return
        for tenant, batch_id in active:
            try:
                self.advance(tenant, batch_id)
            except Exception:  # one batch's trouble must not stop the others; retried next pass
                log.exception("batch %s: this cycle failed; retrying next cycle", batch_id)

    def advance(self, tenant: str, batch_id: str) -> None:
        batch = self.state.get_batch(tenant, batch_id)
        now = self.clock()
        if batch.terminal:  # its active marker outlived the write that ended it
            self.state.forget_active(tenant, batch_id)
            self._drop(batch_id)
            return
        view = None
        if batch.run_id is not None and batch.status != FINALIZING:
            driver = self._driver(batch)
            if lifecycle.must_stop(batch, driver.run.cancelled, now):
                end = lifecycle.early_end(batch, now)
                batch = self._update(batch, lambda b: replace(b, end_status=end))
                pause(driver.run, driver.backend, f"batch {end} through the Batch API" if end == CANCELLED
                      else "batch expired: its completion_window ended")
            view = self._drive(batch, driver)
            if view is None:
                return  # another watcher drives the run
            batch = self.state.get_batch(tenant, batch_id)
        step = lifecycle.next_step(batch, view, now)
        if step == lifecycle.VALIDATE:
            self._validate_and_plan(batch)
        elif step == lifecycle.END_UNSTARTED:
            self._update(batch, lambda b: b.entering(lifecycle.early_end(b, now) or CANCELLED, now))
        elif step == lifecycle.FINALIZE:
            self._finalize(batch, view, now)

    # -- steps -----------------------------------------------------------------------------------
    def _validate_and_plan(self, batch: BatchRecord) -> None:
        now = self.clock()
        try:
            with self.state.open_content(batch.tenant, batch.input_file_id) as stream:
                verdict = validate_lines(stream, batch.endpoint, self.config.models)
        except ChunkpilotError as exc:
            verdict = None
            problems = [LineError("input_file_unreadable", f"the input file cannot be read: {exc}")]
        except ApiError as exc:  # the file was deleted before the batch was validated
            verdict = None
            problems = [LineError("input_file_not_found", f"input file {batch.input_file_id} is gone: {exc}", None,
                                  "input_file_id")]
        if verdict is not None:
            problems = verdict.errors
        if problems:
            self._update(batch, lambda b: b.failing(problems, now) if b.status == "validating" else None)
            return
        served = self.config.models[verdict.model]
        try:
            run_id = start_run(batch, served, self.state.content_uri(batch.tenant, batch.input_file_id),
                               self.state.store_uri, self.config.run_options)
        except ChunkpilotError as exc:
            self._update(batch, lambda b: b.failing([LineError("planning_failed", str(exc))], now))
            return
        self._update(batch, lambda b: b.entering(IN_PROGRESS, now, run_id=run_id, model=verdict.model,
                                                 total=verdict.total) if b.run_id is None and b.status == "validating"
                     else replace(b, run_id=run_id, model=verdict.model, total=verdict.total))

    def _drive(self, batch: BatchRecord, driver: Driver) -> lifecycle.RunView | None:
        """One reconcile cycle of the run (``launcher watch``'s), the counts it shows written to the
        batch, and what it says about the run; None while another watcher holds the run's lease."""
        if not self._hold_lease(batch.id, driver):
            return None
        decision, observed = reconcile_once(driver.run, driver.backend, self.watch_options, driver.known_done,
                                            None, None, driver.book)
        driver.book.flush()
        report = summarize(driver.run.spec, observed, decision, self.clock())
        completed, failed = report.totals["ok"], report.totals["errors"]
        self._update(batch, lambda b: replace(b, completed=completed, failed=failed))
        return lifecycle.RunView(finished=decision.finished and not jobs_active(observed),
                                 all_done=bool(decision.states) and all(s is ChunkState.DONE for s in decision.states.values()),
                                 paused=driver.run.cancelled)

    def _finalize(self, batch: BatchRecord, view: lifecycle.RunView | None, now: float) -> None:
        """Collect the result files, then the terminal status. Ids and end status are reserved on the
        batch first, so a second try after a crash rewrites the same files."""
        if batch.end_status is None or batch.pending_output is None:
            assert view is not None  # a batch entering finalizing was just looked at
            end = lifecycle.end_status(batch, view, now)
            status = CANCELLING if end == CANCELLED else FINALIZING
            batch = self._update(batch, lambda b: b.entering(status, now, end_status=end,
                                                             pending_output=new_id(FILE_PREFIX),
                                                             pending_error=new_id(FILE_PREFIX)))
        run = open_run(self.state.store_uri, batch.run_id)
        results = store_results(self.state, run, batch)
        problems = []
        if batch.end_status == lifecycle.FAILED:
            problems = [LineError("run_failed", "chunks of the batch's run gave up after their attempts; the output "
                                  f"and error files hold what was answered (`launcher status {batch.run_id}`)")]
        final = self.clock()

        def finish(b: BatchRecord) -> BatchRecord:
            ended = b.failing(problems, final) if problems else b.entering(b.end_status, final)
            return replace(ended, output_file_id=results.output_file_id, error_file_id=results.error_file_id,
                           completed=results.completed, failed=results.failed)

        self._update(batch, finish)
        self._drop(batch.id)

    # -- helpers ------------------------------------------------------------------------------------
    def _update(self, batch: BatchRecord, change) -> BatchRecord:
        return self.state.update_batch(batch.tenant, batch.id, change)

    def _driver(self, batch: BatchRecord) -> Driver:
        driver = self.drivers.get(batch.id)
        if driver is None:
            run = open_run(self.state.store_uri, batch.run_id)
            backend = make_backend(run.spec, self.state.store_uri)
            driver = Driver(run, backend, attempt_book(run, backend), Lease(run.run_store, ttl=self.watch_options.lease_ttl))
            self.drivers[batch.id] = driver
        return driver

    def _hold_lease(self, batch_id: str, driver: Driver) -> bool:
        """Take or renew the run's watch lease; False while another watcher (a ``launcher watch``) holds it."""
        try:
            if driver.leased:
                driver.lease.renew()
            else:
                driver.lease.acquire()
                driver.leased = True
            return True
        except LeaseHeldError as exc:
            driver.leased = False
            log.info("batch %s: its run is driven elsewhere (%s)", batch_id, exc)
            return False

    def _drop(self, batch_id: str) -> None:
        driver = self.drivers.pop(batch_id, None)
        if driver is None:
            return
        driver.book.flush(force=True)
        if driver.leased:
            try:
                driver.lease.release()
            except StoreError as exc:
                log.warning("could not release the lease of batch %s (it will expire): %s", batch_id, exc)


__all__ = ["Scheduler", "BATCH_PREFIX"]
