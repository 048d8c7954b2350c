"""A deterministic engine without a model, for plumbing checks and fast tests.

It answers each request with its own prompt (or last message) reversed word by
word, cut to ``max_tokens`` words (finish_reason ``length`` then, else ``stop``), or with an
answer its structured-output constraint accepts (``echo_answer``). Options: ``delay`` seconds per step (to mimic a
slow model), ``batch`` requests finished per step, ``straggle_every`` N and
``straggle_steps`` S (every N-th request added finishes only S steps later, as a
long generation does in vLLM: answers then arrive out of input order), ``trace`` a
file to which the id of every answered request is appended (to measure work
regenerated after a kill). Never a default.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from typing import Any

from chunkpilot.regex_example import regex_example
from chunkpilot.requests import Request, Result


def echo_text(request: Request) -> str:
    """The answer's text alone (``echo_answer``)."""
    return echo_answer(request)[0]


def echo_answer(request: Request) -> tuple[str, str]:
    """(text, finish_reason) of a request: its prompt (or last message's text) with its words
    reversed, cut to ``max_tokens`` words — finish_reason ``length`` when that cut something, as a
    model stopped by max_tokens says. Under a structured-output constraint, an answer that keeps
    it: a choice picked by the text, ``{"echo": text}`` for any JSON object, a small instance of a
    schema (``minimal_instance``), a short string the regex matches (``regex_example``; where it
    cannot build one the text is returned and the worker's check fails the record, saying so)."""
    source = request.messages[-1]["content"] if request.kind == "chat" and request.messages else request.prompt or ""
    words = str(source).split()[::-1]
    max_tokens = int(request.params.get("max_tokens") or 16)
    text = " ".join(words[:max_tokens])
    constraint = request.constraint or {}
    if "choice" in constraint:
        choices = constraint["choice"]
        return choices[sum(map(ord, text)) % len(choices)], "stop"
    if "json_object" in constraint:
        return json.dumps({"echo": text}), "stop"
    if "json" in constraint:
        return json.dumps(minimal_instance(constraint["json"], text)), "stop"
    if "regex" in constraint:
        example = regex_example(constraint["regex"])
        return (text, "stop") if example is None else (example, "stop")
    return text, "length" if len(words) > max_tokens else "stop"


ECHO_DIMENSIONS = 8


def echo_vector(text: str) -> list[float]:
    """A deterministic unit vector of ``text``'s words (each word adds to the dimension its letters pick)."""
    vector = [0.0] * ECHO_DIMENSIONS
    for word in text.split():
        vector[sum(map(ord, word)) % ECHO_DIMENSIONS] += 1.0
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def minimal_instance(schema: Any, text: str) -> Any:
    """A small value of ``schema`` (objects with their required properties, the first enum value,
    ``text`` for strings); best effort — what it gets wrong, the worker's check refuses."""
    if not isinstance(schema, dict):
        return text
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], text)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: minimal_instance(props.get(name, {}), text) for name in schema.get("required") or list(props)}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), text) for _ in range(int(schema.get("minItems") or 0))]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text[: schema["maxLength"]] if "maxLength" in schema else text


class EchoEngine:
    """Answers labelled with the run's model and revision (``echo``/``echo-1`` unless ``--model`` names one)."""

    def __init__(self, model: Any = None, options: dict[str, Any] | None = None, task: str = "generate"):
        self.model_name = getattr(model, "name", None) or model or "echo"
        self.model_revision = getattr(model, "revision", None) or "echo-1"
        options = options or {}
        self.delay = float(options.get("delay", 0.0))
        # A straggler on purpose (tail tests, bench_tail.py): the worker named ``slow_worker`` (its
        # CHUNKPILOT_WORKER) waits ``slow_factor`` times as long per step.
        slow = options.get("slow_worker")
        if slow and os.environ.get("CHUNKPILOT_WORKER") in str(slow).split(","):
            self.delay *= float(options.get("slow_factor", 5.0))
        self.batch = int(options.get("batch", 64))
        self.batch_size = self.batch
        time.sleep(float(options.get("start_seconds", 0.0)))  # stands in for a real engine's start-up
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
            if request.kind == "embedding":
                vectors = [echo_vector(text) for text in request.inputs or ()]
                words = sum(len(text.split()) for text in request.inputs or ())
                done.append(Result(request_id=request_id, prompt_tokens=words, embeddings=vectors))
            else:
                text, finish_reason = echo_answer(request)
                done.append(Result(request_id=request_id, text=text, finish_reason=finish_reason,
                                   prompt_tokens=len((request.prompt or str(request.messages)).split()),
                                   completion_tokens=len(text.split())))
            if self._trace:
                self._trace.write(f"{request_id}\n")
        return done

    def in_flight(self) -> int:
        return len(self._queue)

    def abort_all(self) -> None:
        self._queue.clear()

    def abort(self, request_ids: list[str]) -> None:
        dropped = set(request_ids)
        self._queue = deque(item for item in self._queue if item[0] not in dropped)

    def close(self) -> None:
        self._queue.clear()
        if self._trace:
            self._trace.close()
