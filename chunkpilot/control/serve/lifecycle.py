"""Where a batch goes next, from its record and what its run shows. Pure: values in, a step out.

    validating ──(file valid, run written)──▶ in_progress ──(run finished)──▶ finalizing ──▶ completed
        │                                         │  │                                  └─▶ failed (chunks gave up)
        └─(file invalid)──▶ failed                │  └─(past expires_at)──▶ run paused ──▶ expired
                                                  └─(cancel)──▶ cancelling ──▶ run paused ──▶ cancelled

A batch that ends early (cancelled, expired) keeps what its run answered: its result files
are collected like a finished run's, partial.
"""

from __future__ import annotations

from dataclasses import dataclass

from chunkpilot.control.serve.objects import (CANCELLED, CANCELLING, COMPLETED, EXPIRED, FAILED, FINALIZING, IN_PROGRESS,
                                    VALIDATING, BatchRecord)

# Steps
VALIDATE = "validate"  # check the file and plan the run
END_UNSTARTED = "end_unstarted"  # cancelled before its run was planned
DRIVE = "drive"  # reconcile the run
FINALIZE = "finalize"  # collect the results, then the end status
NOTHING = "nothing"


@dataclass(frozen=True)
class RunView:
    """What one look at a batch's run says: ``finished`` (every chunk final, nothing pending, no job
    running), ``all_done`` (every chunk answered), ``paused`` (its cancel marker is there)."""

    finished: bool
    all_done: bool
    paused: bool


def early_end(batch: BatchRecord, now: float) -> str | None:
    """The status a batch must end in before its run finishes: ``cancelled`` once asked, ``expired``
    past its window; None while it should run on."""
    if batch.status == CANCELLING or batch.end_status == CANCELLED:
        return CANCELLED
    if batch.end_status == EXPIRED or (batch.status in (VALIDATING, IN_PROGRESS) and now >= batch.expires_at):
        return EXPIRED
    return None


def must_stop(batch: BatchRecord, run_paused: bool, now: float) -> bool:
    """Whether the batch's run must be paused now (cancelled or expired, and not paused yet)."""
    return early_end(batch, now) is not None and not run_paused


def next_step(batch: BatchRecord, run: RunView | None, now: float) -> str:
    """What the scheduler does with ``batch`` after this cycle's look at its run (``run``: None
    until it has one, and while it is finalizing)."""
    if batch.terminal:
        return NOTHING
    if batch.status == FINALIZING:
        return FINALIZE
    if run is None:
        if early_end(batch, now) is not None:
            return END_UNSTARTED
        return VALIDATE if batch.status == VALIDATING else NOTHING
    return FINALIZE if run.finished else DRIVE


def end_status(batch: BatchRecord, run: RunView, now: float) -> str:
    """The terminal status a finished run gives its batch: ``cancelled`` once asked (whatever was
    answered by then); ``completed`` when every request was answered (even past the window);
    else ``expired`` past the window, ``failed`` within it (chunks that gave up)."""
    if batch.status == CANCELLING or batch.end_status == CANCELLED:
        return CANCELLED
    if run.all_done:
        return COMPLETED
    return early_end(batch, now) or FAILED


__all__ = ["RunView", "next_step", "end_status", "early_end", "VALIDATE", "END_UNSTARTED", "DRIVE",
           "FINALIZE", "must_stop", "NOTHING", "FAILED", "COMPLETED"]
