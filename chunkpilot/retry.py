"""One way to retry: tenacity, set up the way chunkpilot retries a call that failed for a while.

Every retry loop in chunkpilot goes through ``retrying``: the worker's store calls (a store
outage of up to two minutes is waited out), the watch lease renewal, the SkyPilot API server
being unreachable, S3's conditional writes meeting a concurrent one.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_random_exponential,
)

T = TypeVar("T")


def retrying(retry_on: Callable[[BaseException], bool], *, seconds: float | None = None, attempts: int | None = None,
             first: float = 0.5, cap: float = 10.0, log: logging.Logger | None = None, what: str = "") -> Retrying:
    """A ``Retrying`` that retries exceptions ``retry_on`` accepts, with jittered exponential waits from
    ``first`` up to ``cap`` seconds, for at most ``seconds`` and/or ``attempts``; then the last
    exception is raised as it was."""
    stops = [s for s in (stop_after_delay(seconds) if seconds is not None else None,
                         stop_after_attempt(attempts) if attempts is not None else None) if s is not None]

    def note(state) -> None:
        if log is not None:
            log.warning("%s failed, retrying in %.1fs: %s", what or "call", state.next_action.sleep, state.outcome.exception())

    return Retrying(retry=retry_if_exception(retry_on), stop=stop_any(*stops) if stops else stop_after_attempt(3),
                    wait=wait_random_exponential(multiplier=first, max=cap), reraise=True, before_sleep=note)


def call(action: Callable[[], T], retry_on: Callable[[BaseException], bool], **options) -> T:
    """``action()``, retried as ``retrying(retry_on, **options)`` says."""
    return retrying(retry_on, **options)(action)
