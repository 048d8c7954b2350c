"""Request kinds by endpoint, and turning a record into a request.

Accepted record shapes (each may carry ``custom_id`` and sampling fields overriding the run's):

* ``{"prompt": "..."}`` → completion; ``{"messages": [...]}`` → chat;
* OpenAI Batch request lines ``{"custom_id", "method": "POST", "url": <endpoint>, "body": {...}}``.

Anything else becomes a ``RecordError`` with a specific code; nothing raises.
"""

from __future__ import annotations

from typing import Any

from chunkpilot.prompts import PromptSpec, TemplateProblem, render
from chunkpilot.requests.base import Invalid, RecordError, Request, RequestKind, Result
from chunkpilot.requests.embedding import EmbeddingKind
from chunkpilot.requests.text import ChatKind, CompletionKind
from chunkpilot.spec import Position

_KINDS: dict[str, RequestKind] = {}


def register_kind(kind: RequestKind) -> None:
    _KINDS[kind.name] = kind


def get_kind(name: str) -> RequestKind:
    return _KINDS[name]


def kind_for_output(body: dict[str, Any]) -> RequestKind:
    """The kind that rendered an output body (by its ``object``); KeyError if none did."""
    kind = next((k for k in _KINDS.values() if k.output_object == body.get("object")), None)
    if kind is None:
        raise KeyError(f"no request kind renders {body.get('object')!r}")
    return kind


def kind_for_endpoint(url: Any) -> RequestKind | None:
    return next((k for k in _KINDS.values() if k.endpoint == url), None)


def positional_id(position: Position) -> str:
    """The custom_id given to a record that has none: its position, ``<source>:<offset>``."""
    return f"{position[0]}:{position[1]}"


def custom_id_of(position: Position, fields: dict[str, Any] | None, key: str = "custom_id") -> str:
    """The record's custom_id as output lines carry it: its ``key`` field (a string or an integer),
    else its position."""
    value = fields.get(key) if fields else None
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        return positional_id(position)
    return str(value)


def request_from_record(position: Position, fields: dict[str, Any], defaults: dict[str, Any],
                        prompt: PromptSpec | None = None) -> Request | RecordError:
    """The request a record asks for, or a RecordError saying what is wrong with it.

    With a ``prompt`` spec whose prompts come from fields (a template, an input key), the record
    is data: the rendered text is the request, the run's defaults its parameters. Otherwise the
    record is a request itself (``prompt``, ``messages``, or an OpenAI Batch line). Either way
    the run's structured-output constraint applies unless the request brings its own.
    """
    prompt = prompt or PromptSpec()
    custom_id = custom_id_of(position, fields, prompt.id_key)
    raw_id = fields.get(prompt.id_key)
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        return RecordError(position, custom_id, "invalid_custom_id", f"{prompt.id_key} must be a string or an integer")
    if prompt.from_fields:
        return _from_fields(position, custom_id, fields, defaults, prompt)
    try:
        if "url" in fields or "method" in fields:  # a Batch line (a record may well have a field named "body")
            kind, body, strict = _batch_kind(fields, prompt.task), fields.get("body"), True
        else:
            body = {k: v for k, v in fields.items() if k not in ("custom_id", prompt.id_key)}
            kind, strict = _record_kind(fields, prompt.task), False
        inputs, params = kind.parse(body, defaults, strict)
    except Invalid as exc:
        return RecordError(position, custom_id, exc.code, str(exc))
    inputs["constraint"] = inputs.get("constraint") or prompt.constraint
    return Request(position, custom_id, kind.name, params, **inputs)


def _from_fields(position: Position, custom_id: str, fields: dict[str, Any], defaults: dict[str, Any],
                 prompt: PromptSpec) -> Request | RecordError:
    try:
        text = render(prompt, fields)
    except TemplateProblem as exc:
        return RecordError(position, custom_id, "template_error", str(exc))
    if not text.strip():
        return RecordError(position, custom_id, "template_error", "the rendered prompt is empty")
    params = dict(defaults)
    if prompt.task == "embed":
        return Request(position, custom_id, "embedding", get_kind("embedding").parse({"input": text}, defaults)[1],
                       inputs=(text,))
    if prompt.raw:
        return Request(position, custom_id, "completion", params, prompt=text, constraint=prompt.constraint)
    messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [{"role": "user", "content": text}]
    return Request(position, custom_id, "chat", params, messages=tuple(messages), constraint=prompt.constraint)


def _batch_kind(fields: dict[str, Any], task: str) -> RequestKind:
    method = fields.get("method", "POST")
    if method != "POST":
        raise Invalid("invalid_method", f"method must be POST, got {method!r}")
    url = fields.get("url")
    kind = kind_for_endpoint(url)
    if kind is None:
        endpoints = " or ".join(sorted(k.endpoint for k in _KINDS.values() if k.task == task))
        raise Invalid("unsupported_url", f"url {url!r} is not supported: use {endpoints}")
    if kind.task != task:
        raise Invalid("wrong_task", f"url {url!r} is a request to {kind.task}, and this run is to {task} "
                                    f"(one run, one task: submit {kind.endpoint} lines with --task {kind.task})")
    if not isinstance(fields.get("body"), dict):
        raise Invalid("invalid_body", "body must be a JSON object")
    return kind


def _record_kind(fields: dict[str, Any], task: str) -> RequestKind:
    kinds = [k for k in _KINDS.values() if k.task == task]
    for kind in kinds:
        if any(name in fields for name in kind.input_fields):
            return kind
    names = [f"'{name}'" for k in kinds for name in k.input_fields]
    code = "missing_prompt" if task == "generate" else "missing_input"
    hint = " (or --input-key / --prompt-template to build it from the record's fields)"
    if len(names) == 1:
        raise Invalid(code, f"record has no {names[0]}{hint}")
    raise Invalid(code, f"record has neither {' nor '.join(names)}{hint}")


register_kind(ChatKind())
register_kind(CompletionKind())
register_kind(EmbeddingKind())

TASKS = ("generate", "embed")

__all__ = ["TASKS", "Request", "RecordError", "Result", "RequestKind", "Invalid", "register_kind", "get_kind",
           "kind_for_endpoint", "kind_for_output", "request_from_record", "custom_id_of", "positional_id"]
