"""The engine seam: requests in, completions out, in completion order.

An engine is driven by the worker's loop, never the other way round, so the
worker keeps control of what is in flight, when to commit and when to stop:

* ``add(request_id, request)`` queues one request; it may return a Result at
  once when the engine rejects the request (e.g. prompt too long) — that is an
  answer, not an exception.
* ``step()`` does a slice of work and returns whatever finished during it (maybe
  nothing). It must not block for long: the worker commits and heartbeats between
  steps.
* ``in_flight()`` counts requests added and not yet returned.
* ``abort_all()`` drops everything in flight (on a stop with an expired grace period).

Engines are constructed with ``(model, options)`` by the registry in
``worker.engines``; ``model_name`` and ``model_revision`` go into every output body.
"""

from __future__ import annotations

from typing import Protocol

from chunkpilot.requests import Request, Result


class Engine(Protocol):
    model_name: str
    model_revision: str
    #: The most requests the engine runs at once — its scheduler's own limit (vLLM's
    #: ``max_num_seqs``, read from the engine's config, never assumed). The worker keeps more
    #: than this in flight so the engine's waiting queue is never empty (``read_ahead``).
    batch_size: int

    def add(self, request_id: str, request: Request) -> Result | None: ...

    def step(self) -> list[Result]: ...

    def in_flight(self) -> int: ...

    def abort_all(self) -> None: ...

    def abort(self, request_ids: list[str]) -> None:
        """Drop these requests; the engine's others go on (two chunks may share it)."""
        ...

    def close(self) -> None: ...


def read_ahead(batch_size: int) -> int:
    """Requests kept in flight for an engine that runs ``batch_size`` at once: a full batch plus
    half a batch waiting, at least 32, so a finished request is replaced from the waiting queue
    within the same engine step instead of a round trip through the worker loop later."""
    return batch_size + max(32, batch_size // 2)
