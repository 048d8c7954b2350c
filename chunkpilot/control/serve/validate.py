"""Checking an uploaded batch input file before it becomes a run. Pure: lines in, a verdict out.

OpenAI fails a whole batch in ``validating`` when its file breaks the line format's rules; the
same rules here: every non-blank line a JSON object with a string ``custom_id`` seen on no other
line, ``method`` POST, ``url`` equal to the batch's ``endpoint``, a ``body`` object naming a
``model`` — one model for the whole file, and one this server serves. What a body asks for
(sampling fields, messages) is the request kind's to check: a body it refuses becomes one line
of the error file, as OpenAI answers such a request with a 400 there, and fails nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Collection, Iterable

from chunkpilot.control.serve.objects import LineError

MAX_ERRORS = 100  # a file with more problems reports its first ones


@dataclass
class Validation:
    """``total``: non-blank lines (the batch's ``request_counts.total``); ``model``: the one named."""

    total: int = 0
    model: str | None = None
    errors: list[LineError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_lines(lines: Iterable[bytes], endpoint: str, served: Collection[str],
                   max_errors: int = MAX_ERRORS) -> Validation:
    """Check every line (1-based numbers in the errors); reads all of ``lines`` once, keeping only
    the custom_ids seen. Never raises for anything in the lines."""
    result = Validation()
    seen: set[str] = set()
    models_line: dict[str, int] = {}

    def problem(code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(result.errors) < max_errors:
            result.errors.append(LineError(code, message, line, param))

    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        result.total += 1
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            problem("invalid_json_line", f"line {number} is not valid JSON", number)
            continue
        if not isinstance(obj, dict):
            problem("invalid_json_line", f"line {number} is not a JSON object", number)
            continue
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problem("missing_custom_id", f"line {number}: custom_id must be a non-empty string", number, "custom_id")
        elif custom_id in seen:
            problem("duplicate_custom_id", f"line {number}: custom_id {custom_id!r} is used by an earlier line; "
                                           "each request needs its own", number, "custom_id")
        else:
            seen.add(custom_id)
        if obj.get("method") != "POST":
            problem("invalid_method", f"line {number}: method must be \"POST\"", number, "method")
        if obj.get("url") != endpoint:
            problem("mismatched_url", f"line {number}: url {obj.get('url')!r} differs from the batch's endpoint "
                                      f"{endpoint!r}", number, "url")
        body = obj.get("body")
        if not isinstance(body, dict):
            problem("invalid_body", f"line {number}: body must be a JSON object", number, "body")
            continue
        model = body.get("model")
        if not isinstance(model, str) or not model:
            problem("missing_model", f"line {number}: body.model must name a model", number, "body.model")
            continue
        models_line.setdefault(model, number)
        if result.model is None:
            result.model = model
        elif model != result.model:
            problem("mismatched_model", f"line {number}: model {model!r} differs from {result.model!r} on line "
                                        f"{models_line[result.model]}; one batch, one model", number, "body.model")
    if result.total == 0:
        problem("empty_file", "the input file holds no requests", None)
    elif result.model is not None and result.model not in served:
        names = ", ".join(sorted(served)) or "none"
        problem("model_not_found", f"model {result.model!r} is not served here (served: {names})",
                models_line[result.model], "body.model")
    return result
