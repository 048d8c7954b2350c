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

    def add(self, request_id: str, request: Request) -> Result | None: ...

    def step(self) -> list[Result]: ...

    def in_flight(self) -> int: ...

    def abort_all(self) -> None: ...

    def close(self) -> None: ...
