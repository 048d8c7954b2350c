"""OpenAI Batch output lines, so existing readers of batch results work unchanged.

``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``

The ``id`` carries the record's position (``batch_req_<run>_<source>_<offset>``); reading a
line back (``position_of_line``, ``line_outcome``) parses it as JSON, so nothing depends on the
byte layout of a line. The body is the request kind's (``chunkpilot.requests``).

Lineage: the body names the model and its revision; a record read from an input pinned to a hub
commit (a Hugging Face dataset) also carries ``input_revision``, that commit — in the body of an
answer, in the ``error`` object of an error line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from chunkpilot.requests import RecordError, Request, Result, get_kind, kind_for_output
from chunkpilot.spec import Position

_ID_PREFIX = "batch_req_"


def output_id(run_id: str, position: Position) -> str:
    return f"{_ID_PREFIX}{run_id}_{position[0]}_{position[1]}"


def position_of_id(output_line_id: Any) -> Position:
    """The position an output line's ``id`` carries; ValueError if it is not one of ours."""
    if not isinstance(output_line_id, str) or not output_line_id.startswith(_ID_PREFIX):
        raise ValueError("not a chunkpilot output line")
    _, source, offset = output_line_id.rsplit("_", 2)
    return int(source), int(offset)


def position_of_line(line: bytes) -> Position:
    """The position of the record an output line answers; ValueError if it is not one of ours."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a chunkpilot output line: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError("not a chunkpilot output line")
    return position_of_id(obj.get("id"))


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


def answer_of(obj: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """(the answer, the error object) of a parsed output line: the answer as its kind renders it
    (text, or the parsed value of a JSON answer); None and the error for an error line."""
    if obj.get("error") is not None:
        return None, obj["error"]
    body = obj["response"]["body"]
    return kind_for_output(body).answer(body), None


def _line(run_id: str, position: Position, custom_id: str, response: Any, error: Any) -> bytes:
    obj = {"id": output_id(run_id, position), "custom_id": custom_id, "response": response, "error": error}
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def ok_line(run_id: str, request: Request, result: Result, model: str, revision: str,
            input_revision: str | None = None) -> bytes:
    response_id = f"{run_id}-{request.position[0]}-{request.position[1]}"
    body = get_kind(request.kind).render(request, result, model, revision, response_id, int(time.time()))
    if input_revision is not None:
        body["input_revision"] = input_revision
    response = {"status_code": 200, "request_id": response_id, "body": body}
    return _line(run_id, request.position, request.custom_id, response, None)


def error_line(run_id: str, position: Position, custom_id: str, code: str, message: str,
               input_revision: str | None = None) -> bytes:
    error = {"code": code, "message": message}
    if input_revision is not None:
        error["input_revision"] = input_revision
    return _line(run_id, position, custom_id, None, error)


def record_error_line(run_id: str, error: RecordError, input_revision: str | None = None) -> bytes:
    return error_line(run_id, error.position, error.custom_id, error.code, error.message, input_revision)
