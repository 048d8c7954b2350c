"""Structured answers: the constraint a request carries, and the check every answer passes.

A constraint is one of ``{"json": <JSON Schema>}``, ``{"json_object": true}``, ``{"choice": [..]}``
or ``{"regex": "..."}`` — the shape of vLLM's ``StructuredOutputsParams``, which the vLLM engine
hands it to. It comes from the run (``--json-schema``, ``--choice``, ``--regex``) or from the
request: OpenAI's ``response_format`` or vLLM's own ``structured_outputs`` body field (the record's
wins). Whatever the engine did, the worker checks each answer (``check_answer``): one that does not
parse or validate — cut by ``max_tokens``, say — becomes an error line, never a silent bad answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chunkpilot.errors import ConfigError
from chunkpilot.requests.base import Invalid

KINDS = ("json", "json_object", "choice", "regex")


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a JSON Schema (checked against its own ``$schema`` draft, else 2020-12)."""
    from jsonschema import SchemaError, validators

    if not isinstance(schema, dict):
        return f"a JSON Schema is an object, got {type(schema).__name__}"
    try:
        validators.validator_for(schema, default=validators.Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        return f"{exc.message} (at {'/'.join(map(str, exc.path)) or 'the top'})"
    return None


def check_constraint(constraint: dict[str, Any], where: str) -> dict[str, Any]:
    """``constraint`` if it is one chunkpilot can apply and check; ConfigError naming ``where`` otherwise."""
    given = [k for k in KINDS if constraint.get(k) not in (None, False)]
    unknown = sorted(set(constraint) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where}: unsupported structured-output field(s) {', '.join(unknown)} (use one of {', '.join(KINDS)})")
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(KINDS)}, got {', '.join(given) or 'none'}")
    kind, value = given[0], constraint[given[0]]
    if kind == "json":
        problem = schema_problem(value)
        if problem:
            raise ConfigError(f"{where}: not a valid JSON Schema: {problem}")
    elif kind == "json_object" and value is not True:
        raise ConfigError(f"{where}: json_object must be true")
    elif kind == "choice":
        if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
            raise ConfigError(f"{where}: choice must be a non-empty list of non-empty strings")
    elif kind == "regex":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: regex must be a non-empty string")
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{where}: not a valid regular expression: {exc}") from None
    return {kind: value}


def from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """The constraint a request body asks for (``response_format`` or ``structured_outputs``), if any;
    ``Invalid`` for one that cannot be honoured."""
    fmt, vllm = body.get("response_format"), body.get("structured_outputs")
    if fmt is not None and vllm is not None:
        raise Invalid("invalid_parameter", "give response_format or structured_outputs, not both")
    try:
        if vllm is not None:
            if not isinstance(vllm, dict):
                raise Invalid("invalid_parameter", "structured_outputs must be an object")
            return check_constraint(vllm, "structured_outputs")
        if fmt is None:
            return None
        if not isinstance(fmt, dict):
            raise Invalid("invalid_parameter", "response_format must be an object")
        kind = fmt.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            return {"json_object": True}
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if schema is None:
                raise Invalid("invalid_parameter", "response_format json_schema needs json_schema.schema")
            return check_constraint({"json": schema}, "response_format.json_schema.schema")
        raise Invalid("unsupported_parameter", f"response_format type {kind!r} is not supported (json_object, json_schema, text)")
    except ConfigError as exc:
        raise Invalid("invalid_parameter", str(exc)) from None


def check_answer(constraint: dict[str, Any], text: str) -> tuple[Any, str | None]:
    """(the answer's value — parsed JSON for json/json_object, the text otherwise —, why it does not
    satisfy ``constraint`` or None)."""
    from jsonschema import Draft202012Validator, validators

    if "choice" in constraint:
        return text, None if text in constraint["choice"] else f"{text[:80]!r} is not one of the choices"
    if "regex" in constraint:
        return text, None if re.fullmatch(constraint["regex"], text) else f"{text[:80]!r} does not match the regex"
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, f"the answer is not JSON: {exc.msg} at character {exc.pos}"
    if "json_object" in constraint:
        return value, None if isinstance(value, dict) else f"the answer is JSON but not an object ({type(value).__name__})"
    schema = constraint["json"]
    validator = validators.validator_for(schema, default=Draft202012Validator)(schema)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(map(str, error.path)) or "the top"
        return value, f"the answer does not match the schema at {where}: {error.message}"
    return value, None
