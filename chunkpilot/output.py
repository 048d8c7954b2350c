"""OpenAI Batch output lines, so existing readers of batch results work unchanged.

``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``

The ``id`` carries the record's position (``batch_req_<run>_<source>_<offset>``):
collect reads it back to dedupe and order without parsing the whole line, so
``id`` is always the first field and ``error`` always the last.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from chunkpilot.spec import RecordKey
from chunkpilot.requests import Completion, RecordError, Request

_ID_PREFIX = b'{"id": "batch_req_'
_OK_SUFFIX = b'"error": null}'


def output_id(run_id: str, key: RecordKey) -> str:
    return f"batch_req_{run_id}_{key[0]}_{key[1]}"


def key_of_line(line: bytes) -> RecordKey:
    """The record key of an output line written by ``ok_line``/``error_line``."""
    if not line.startswith(_ID_PREFIX):
        raise ValueError("not a chunkpilot output line")
    end = line.index(b'"', len(_ID_PREFIX))
    _, source, offset = line[len(_ID_PREFIX) : end].rsplit(b"_", 2)
    return int(source), int(offset)


def is_ok_line(line: bytes) -> bool:
    return line.rstrip(b"\r\n").endswith(_OK_SUFFIX)


@dataclass(frozen=True)
class LineOutcome:
    """What an output line says about its record: its error code (None if answered) and tokens."""

    error_code: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def line_outcome(line: bytes) -> LineOutcome:
    """Parse one output line for its outcome (only for the few lines read back: held answers, error parts)."""
    obj = json.loads(line)
    error = obj.get("error")
    if error is not None:
        return LineOutcome(str(error.get("code") or "error") if isinstance(error, dict) else "error")
    usage = ((obj.get("response") or {}).get("body") or {}).get("usage") or {}
    return LineOutcome(None, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _line(run_id: str, key: RecordKey, custom_id: str, response: Any, error: Any) -> bytes:
    obj = {"id": output_id(run_id, key), "custom_id": custom_id, "response": response, "error": error}
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def ok_line(run_id: str, request: Request, completion: Completion, model: str, revision: str) -> bytes:
    created = int(time.time())
    usage = {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }
    request_id = f"{run_id}-{request.key[0]}-{request.key[1]}"
    if request.kind == "chat":
        body = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "model_revision": revision,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": usage,
        }
    else:
        body = {
            "id": f"cmpl-{request_id}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "model_revision": revision,
            "choices": [{"index": 0, "text": completion.text, "finish_reason": completion.finish_reason}],
            "usage": usage,
        }
    response = {"status_code": 200, "request_id": request_id, "body": body}
    return _line(run_id, request.key, request.custom_id, response, None)


def error_line(run_id: str, key: RecordKey, custom_id: str, code: str, message: str) -> bytes:
    return _line(run_id, key, custom_id, None, {"code": code, "message": message})


def record_error_line(run_id: str, error: RecordError) -> bytes:
    return error_line(run_id, error.key, error.custom_id, error.code, error.message)
