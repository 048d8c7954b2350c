"""Parse input lines into requests or error records. Pure: bytes in, values out.

Accepted shapes, one JSON object per line (each may carry ``custom_id`` and
per-record sampling fields that override the run defaults):

* ``{"prompt": "..."}`` → completion
* ``{"messages": [...]}`` → chat completion
* OpenAI Batch request lines: ``{"custom_id", "method": "POST", "url":
  "/v1/chat/completions" | "/v1/completions", "body": {...}}``

Anything else becomes a ``RecordError`` with a specific code; nothing raises.
"""

from __future__ import annotations

import json
from typing import Any

from chunkpilot.spec import RecordKey
from chunkpilot.requests import RecordError, Request

# Sampling fields a record may set; anything else in a body (``model``, ``stream``…) is ignored.
SAMPLING_FIELDS = {
    "max_tokens": int,
    "max_completion_tokens": int,
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": int,
    "seed": int,
    "stop": (str, list),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "repetition_penalty": (int, float),
    "min_tokens": int,
}
BATCH_URLS = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
WHITESPACE = b" \t\r\n\x0b\x0c"


def positional_id(key: RecordKey) -> str:
    """The custom_id given to a record that has none: its position, ``<source>:<offset>``."""
    return f"{key[0]}:{key[1]}"


def is_blank(line: bytes) -> bool:
    return not line.strip(WHITESPACE)


def parse_record(key: RecordKey, line: bytes, defaults: dict[str, Any]) -> Request | RecordError:
    """Turn one non-blank input line into a Request, or a RecordError saying what is wrong."""
    loaded = _load(key, line)
    if isinstance(loaded, RecordError):
        return loaded
    obj, custom_id = loaded
    if "url" in obj or "method" in obj:  # a record may well have a field named "body"
        return _parse_batch_line(key, custom_id, obj, defaults)
    return _parse_body(key, custom_id, obj, None, defaults)


def custom_id_of(key: RecordKey, line: bytes) -> str:
    """The custom_id ``parse_record`` gives this line's request or error record (without parsing the rest)."""
    loaded = _load(key, line)
    return loaded.custom_id if isinstance(loaded, RecordError) else loaded[1]


def _load(key: RecordKey, line: bytes) -> tuple[dict, str] | RecordError:
    """The line's JSON object and custom_id, or the RecordError that makes it unusable."""
    fallback_id = positional_id(key)
    if key[1] == 0 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]  # a UTF-8 byte order mark at the start of a file
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordError(key, fallback_id, "invalid_utf8", f"line is not valid UTF-8 (byte {exc.start})")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return RecordError(key, fallback_id, "invalid_json", f"line is not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return RecordError(key, fallback_id, "not_an_object", f"expected a JSON object, got {type(obj).__name__}")

    custom_id = obj.get("custom_id")
    if custom_id is None:
        return obj, fallback_id
    if not isinstance(custom_id, (str, int)) or isinstance(custom_id, bool):
        return RecordError(key, fallback_id, "invalid_custom_id", "custom_id must be a string")
    return obj, str(custom_id)


def _parse_batch_line(key: RecordKey, custom_id: str, obj: dict, defaults: dict[str, Any]) -> Request | RecordError:
    method = obj.get("method", "POST")
    if method != "POST":
        return RecordError(key, custom_id, "invalid_method", f"method must be POST, got {method!r}")
    url = obj.get("url")
    if url not in BATCH_URLS:
        return RecordError(
            key, custom_id, "unsupported_url", f"url {url!r} is not supported: use {' or '.join(sorted(BATCH_URLS))}"
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        return RecordError(key, custom_id, "invalid_body", "body must be a JSON object")
    return _parse_body(key, custom_id, body, BATCH_URLS[url], defaults)


def _parse_body(
    key: RecordKey, custom_id: str, body: dict, kind: str | None, defaults: dict[str, Any]
) -> Request | RecordError:
    has_messages, has_prompt = "messages" in body, "prompt" in body
    if kind is None:
        if has_messages:
            kind = "chat"
        elif has_prompt:
            kind = "completion"
        else:
            return RecordError(key, custom_id, "missing_prompt", "record has neither 'prompt' nor 'messages'")

    sampling = dict(defaults)
    for name, value in body.items():
        expected = SAMPLING_FIELDS.get(name)
        if expected is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, expected):
            return RecordError(key, custom_id, "invalid_parameter", f"{name} has the wrong type ({type(value).__name__})")
        sampling[name] = value
    if "max_completion_tokens" in sampling:
        sampling["max_tokens"] = sampling.pop("max_completion_tokens")
    n = body.get("n", 1)
    if n != 1:
        return RecordError(key, custom_id, "unsupported_parameter", "only n=1 is supported")

    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return RecordError(key, custom_id, "missing_prompt", "'messages' must be a non-empty list")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
                return RecordError(
                    key, custom_id, "invalid_messages", f"message {i} must be an object with 'role' and 'content'"
                )
        return Request(key, custom_id, "chat", sampling, messages=tuple(messages))

    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        return RecordError(key, custom_id, "missing_prompt", "'prompt' must be a string")
    return Request(key, custom_id, "completion", sampling, prompt=prompt)
