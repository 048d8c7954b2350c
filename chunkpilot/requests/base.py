"""The request-kind seam: what a worker hands an engine, what an engine hands back, and how a
kind parses a body and renders an answer.

A *kind* is one endpoint (``/v1/chat/completions``…). It parses and validates a request body in
one place (``parse``) and renders the output body in one place (``render``); engines see only
``Request``s and return ``Result``s, whatever the kind. A body field that would change the answer
and that no kind honours is refused with ``unsupported_parameter`` naming it — never ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from chunkpilot.spec import Position


@dataclass(frozen=True)
class Request:
    """One record, ready for an engine.

    ``params`` are the sampling parameters (the run's defaults overridden by the record's own),
    validated; ``prompt`` or ``messages`` is the input, as the kind wants it.
    """

    position: Position
    custom_id: str
    kind: str
    params: dict[str, Any]
    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    constraint: dict[str, Any] | None = None  # a structured-output constraint (``requests.structured``)
    inputs: tuple[str, ...] | None = None  # texts to embed


@dataclass(frozen=True)
class RecordError:
    """A record that cannot be sent to the engine; it becomes an error line."""

    position: Position
    custom_id: str
    code: str
    message: str


@dataclass(frozen=True)
class Result:
    """An engine's answer to one request, whatever its kind (``error`` set when it was rejected)."""

    request_id: str
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: tuple[str, str] | None = None  # (code, message)
    extra: dict[str, Any] = field(default_factory=dict)
    embeddings: list[list[float]] | None = None  # one vector per input of an embedding request


class Invalid(Exception):
    """Raised inside a kind's ``parse``: the body cannot be answered (``code``, message)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class RequestKind(Protocol):
    """One endpoint. Implementations: ``chat`` and ``completion`` (``chunkpilot.requests.text``)."""

    name: str  # "chat"
    endpoint: str  # "/v1/chat/completions"
    output_object: str  # the "object" of the bodies it renders: "chat.completion"
    task: str  # the run task it belongs to: "generate" or "embed"
    input_fields: tuple[str, ...]  # the body fields that carry the input ("messages")

    def parse(self, body: dict[str, Any], defaults: dict[str, Any], strict: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """(input fields for ``Request``, validated params); raises ``Invalid``. ``strict``: a Batch
        body, where every unknown field is refused (see ``sampling_params``)."""
        ...

    def render(self, request: Request, result: Result, model: str, revision: str, response_id: str,
               created: int) -> dict[str, Any]:
        """The OpenAI response body of an answered request."""
        ...

    def answer(self, body: dict[str, Any]) -> Any:
        """The answer in a body ``render`` made: the text, or the parsed value of a JSON answer."""
        ...


# -- sampling parameters: one table, checked in one place -------------------------------------

def _integer(name: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise Invalid("invalid_parameter", f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise Invalid("invalid_request", f"{name} must be at least {low}, got {value!r}")
    return int(value)


def _number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Invalid("invalid_parameter", f"{name} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bound = (f"between {low:g} and {high:g}" if low is not None and high is not None
                 else f"≥ {low:g}" if low is not None else f"≤ {high:g}")
        raise Invalid("invalid_request", f"{name} must be {bound}, got {value!r}")
    return float(value)


def _stop(name: str, value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise Invalid("invalid_parameter", f"{name} must be a string or a list of strings, got {value!r}")
    return [s for s in stops if s]


# name -> checker(name, value) returning the value to use. These are honoured by every engine.
SAMPLING = {
    "max_tokens": lambda n, v: _integer(n, v, 1),
    "max_completion_tokens": lambda n, v: _integer(n, v, 1),
    "min_tokens": lambda n, v: _integer(n, v, 0),
    "temperature": lambda n, v: _number(n, v, 0.0, None),
    "top_p": lambda n, v: _number(n, v, 0.0, 1.0),
    "top_k": lambda n, v: _integer(n, v, -1),
    "min_p": lambda n, v: _number(n, v, 0.0, 1.0),
    "seed": lambda n, v: _integer(n, v),
    "stop": _stop,
    "presence_penalty": lambda n, v: _number(n, v, -2.0, 2.0),
    "frequency_penalty": lambda n, v: _number(n, v, -2.0, 2.0),
    "repetition_penalty": lambda n, v: _number(n, v, 0.0, None),
}
# Body fields that change nothing about the answer (OpenAI bookkeeping), or hold only the
# value we already give (n=1, no streaming).
HARMLESS = {"model", "user", "metadata", "store", "service_tier"}
# Parsed by ``requests.structured`` into the request's constraint.
STRUCTURED = {"response_format", "structured_outputs"}
SINGLE_VALUED = {"n": (1,), "stream": (False,), "echo": (False,), "logprobs": (False, 0), "suffix": ("",)}
# Fields known to change answers that chunkpilot does not (yet) honour: refused wherever they
# appear, in a Batch body or a plain record (whose other fields are the user's own data).
NOT_HONOURED = {
    "guided_json", "guided_regex", "guided_choice", "guided_grammar",
    "guided_decoding_backend", "guided_whitespace_pattern", "tools", "tool_choice", "functions", "function_call",
    "parallel_tool_calls", "logprobs", "top_logprobs", "logit_bias", "best_of", "use_beam_search", "prompt_logprobs",
    "echo", "suffix", "n", "stream", "ignore_eos", "bad_words", "stop_token_ids", "length_penalty",
    "skip_special_tokens", "include_stop_str_in_output", "reasoning_effort", "modalities", "audio", "prediction",
    "web_search_options", "truncate_prompt_tokens", "allowed_token_ids", "logits_processors",
}

# What to send instead of vLLM's old guided-decoding keys (which vLLM >= 0.12 ignores without a word).
GUIDED_INSTEAD = {"guided_json": '{"json": <schema>}', "guided_regex": '{"regex": "..."}',
                  "guided_choice": '{"choice": [...]}', "guided_grammar": '{"grammar": "..."}'}


def sampling_params(body: dict[str, Any], defaults: dict[str, Any], allowed: set[str], strict: bool) -> dict[str, Any]:
    """The run's defaults overridden by the body's sampling fields, each checked.

    ``allowed``: the kind's other fields. ``strict`` (a Batch body): any field neither sampling
    nor allowed nor harmless is refused; otherwise (a plain record, whose other fields are the
    user's data) only the fields known to change answers are.
    """
    params = dict(defaults)
    for name, value in body.items():
        if name in SAMPLING:
            if value is not None:
                params[name] = SAMPLING[name](name, value)
            continue
        if name in allowed or name in HARMLESS or name in STRUCTURED:
            continue
        if value is None or any(value == v and type(value) is type(v) for v in SINGLE_VALUED.get(name, ())):
            continue  # absent in all but name, or the one value chunkpilot gives anyway
        if name in NOT_HONOURED or strict:
            if name in SINGLE_VALUED:
                detail = f"only {name}={SINGLE_VALUED[name][0]!r} is supported"
            elif name in GUIDED_INSTEAD:
                detail = (f"vLLM's old guided decoding is not honoured: send structured_outputs {GUIDED_INSTEAD[name]} "
                          "or response_format, or give the run --json-schema, --choice or --regex")
            else:
                detail = "it would change the answer and chunkpilot does not honour it"
            raise Invalid("unsupported_parameter", f"unsupported field {name!r}: {detail}")
    if "max_completion_tokens" in params:  # the newer name wins, as in OpenAI's API
        params["max_tokens"] = params.pop("max_completion_tokens")
    return params
