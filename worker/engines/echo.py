"""A deterministic engine without a model, for plumbing checks and fast tests.

It answers each request with its own prompt (or last message) reversed word by
word, cut to ``max_tokens`` words. Options: ``delay`` seconds per step (to mimic a
slow model), ``batch`` requests finished per step, ``straggle_every`` N and
``straggle_steps`` S (every N-th request added finishes only S steps later, as a
long generation does in vLLM: answers then arrive out of input order), ``trace`` a
file to which the id of every answered request is appended (to measure work
regenerated after a kill). Never a default.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from chunkpilot.requests import Request, Result


def echo_text(request: Request) -> str:
    """The request's prompt (or last message's text) with its words reversed, cut to ``max_tokens`` words."""
    source = request.messages[-1]["content"] if request.kind == "chat" and request.messages else request.prompt or ""
    words = str(source).split()[::-1]
    max_tokens = int(request.params.get("max_tokens") or 16)
    return " ".join(words[:max_tokens])


class EchoEngine:
    model_name = "echo"
    model_revision = "echo-1"

    def __init__(self, model: str | None = None, options: dict[str, Any] | None = None):
        options = options or {}
        self.delay = float(options.get("delay", 0.0))
        self.batch = int(options.get("batch", 64))
        self.straggle_every = int(options.get("straggle_every", 0))
        self.straggle_steps = int(options.get("straggle_steps", 0))
        self._trace = open(options["trace"], "a", buffering=1) if options.get("trace") else None
        self._queue: deque[tuple[str, Request, int]] = deque()  # (id, request, first step it may finish in)
        self._added = 0
        self._steps = 0

    def add(self, request_id: str, request: Request) -> Result | None:
        straggles = self.straggle_every and self._added % self.straggle_every == 0
        self._queue.append((request_id, request, self._steps + (self.straggle_steps if straggles else 0)))
        self._added += 1
        return None

    def _take_ready(self) -> list[tuple[str, Request]]:
        ready, waiting = [], deque()
        for item in self._queue:
            if len(ready) < self.batch and item[2] <= self._steps:
                ready.append(item[:2])
            else:
                waiting.append(item)
        self._queue = waiting
        return ready

    def step(self) -> list[Result]:
        if not self._queue:
            return []
        if self.delay:
            time.sleep(self.delay)
        self._steps += 1
        done = []
        for request_id, request in self._take_ready():
            text = echo_text(request)
            done.append(
                Result(
                    request_id=request_id,
                    text=text,
                    finish_reason="stop",
                    prompt_tokens=len((request.prompt or str(request.messages)).split()),
                    completion_tokens=len(text.split()),
                )
            )
            if self._trace:
                self._trace.write(f"{request_id}\n")
        return done

    def in_flight(self) -> int:
        return len(self._queue)

    def abort_all(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        self._queue.clear()
        if self._trace:
            self._trace.close()
