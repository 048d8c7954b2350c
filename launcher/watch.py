"""The reconcile loop: observe, decide, act, until every chunk is done or has given up.

It keeps no state outside the store: kill it anywhere, start it again, and it
carries on. Each attempt is claimed by creating ``jobs/<chunk>/a<n>.json`` with
put-if-absent *before* the job is launched, so no attempt is ever launched twice,
and a lease stops a second watcher.
"""

from __future__ import annotations

import logging
import time
import os
from dataclasses import dataclass, field
from typing import Callable

from launcher.backends.base import Backend, LaunchRequest
from launcher.errors import BackendError, NotFoundError, StoreError
from launcher.lease import Lease
from launcher.names import job_name
from launcher.observe import ChunkObservation, observe
from launcher.reconcile import Decision, Policy, decide
from launcher.runs import OpenRun
from launcher.spec import AttemptRecord, attempt_key

log = logging.getLogger("chunkpilot.watch")


@dataclass(frozen=True)
class WatchOptions:
    max_attempts: int | None = None  # None: the run's own
    interval: float = field(default_factory=lambda: float(os.environ.get("CHUNKPILOT_POLL_SECONDS", "5")))
    stuck_seconds: float = 0.0
    missing_grace_seconds: float = 60.0
    lease_ttl: float = 120.0


def policy_for(run: OpenRun, options: WatchOptions) -> Policy:
    return Policy(
        max_attempts=options.max_attempts or run.spec.max_attempts,
        parallel=run.spec.parallel,
        stuck_seconds=options.stuck_seconds,
        missing_grace_seconds=options.missing_grace_seconds,
        run_cancelled=run.cancelled,
    )


def reconcile_once(run: OpenRun, backend: Backend, options: WatchOptions, known_done: set[str]) -> tuple[Decision, dict[str, ChunkObservation]]:
    """One cycle: observe, decide, then cancel, record and launch."""
    observed = observe(run.run_store, run.spec, backend, skip_poll=known_done)
    decision = decide([o.view() for o in observed.values()], policy_for(run, options), time.time())
    known_done.update(c for c, o in observed.items() if o.done is not None)

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
        if not run.run_store.put_if_absent(attempt_key(item.chunk, item.attempt), record.to_json()):
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
    key = attempt_key(chunk, attempt)
    try:
        record = AttemptRecord.from_json(run.run_store.get(key))
    except NotFoundError:
        return
    if only_if_open and record.ended_at is not None:
        return
    run.run_store.put(key, record.with_(**changes).to_json())


def watch(
    run: OpenRun,
    backend: Backend,
    options: WatchOptions,
    on_cycle: Callable[[Decision, dict[str, ChunkObservation]], None] | None = None,
) -> Decision:
    """Drive the run until it is finished; returns the last decision (its chunk states say how it went)."""
    lease = Lease(run.run_store, ttl=options.lease_ttl)
    lease.acquire()
    known_done: set[str] = set()
    try:
        while True:
            try:
                decision, observed = reconcile_once(run, backend, options, known_done)
            except (StoreError, BackendError) as exc:  # transient: the store's or backend's retries gave up
                log.warning("%s; retrying next cycle", exc)
                time.sleep(options.interval)
                continue
            if on_cycle:
                on_cycle(decision, observed)
            if decision.finished and not _any_active(observed, known_done):
                return decision
            time.sleep(options.interval)
            _renew(lease)
    finally:
        try:
            lease.release()
        except StoreError as exc:
            log.warning("could not release the lease (it will expire): %s", exc)


def _renew(lease: Lease) -> None:
    """Renew the lease; a store outage is retried, losing the lease to another watcher is not."""
    for delay in (0.5, 1, 2, 4, 8):
        try:
            lease.renew()
            return
        except StoreError as exc:
            log.warning("lease renewal failed, retrying: %s", exc)
            time.sleep(delay)
    lease.renew()


def _any_active(observed: dict[str, ChunkObservation], known_done: set[str]) -> bool:
    """A job still running (e.g. on a cancelled run, or a chunk that gave up) keeps watch going."""
    return any(o.job is not None and o.job.status.active for c, o in observed.items() if c not in known_done)
