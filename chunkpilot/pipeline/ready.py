"""Whether a step's chunk can run: its upstream chunk (the same chunk of the step before) is done.

Chunk j of step k+1 becomes runnable the moment chunk j of step k has its ``_SUCCESS`` marker,
not when all of step k is done. An upstream chunk that failed for good (its claim says
``failed``, or its attempts are used up with no live claim) fails the chunks it feeds.
"""

from __future__ import annotations

from typing import Literal

from chunkpilot import claims, layout
from chunkpilot.spec import RunSpec
from chunkpilot.store import Store

UpstreamState = Literal["done", "waiting", "failed"]


def upstream_state(up_store: Store, up_spec: RunSpec, chunk: str, now: float) -> tuple[UpstreamState, str]:
    """(state, why) of ``chunk`` in the upstream step run ``up_store``."""
    if up_store.exists(layout.done_marker(chunk)):
        return "done", ""
    claim, _ = claims.read_claim(up_store, chunk)
    if claim is None:
        return "waiting", ""
    if claim.state == "failed":
        return "failed", f"its chunk in the step before failed: {claim.reason}"
    limit = claims.read_allowance(up_store).attempts_for(chunk, up_spec.max_attempts)
    if not claim.live(now) and claim.state != "done" and claim.attempt >= limit:
        return "failed", f"its chunk in the step before gave up after {claim.attempt} attempt(s)"
    return "waiting", ""
