"""Prompts from a record's fields: ``--prompt-template`` (Jinja2) or ``--input-key``, and the system prompt.

A template is rendered in Jinja2's sandbox, strict about undefined names: its variables are the
record's top-level fields (and ``record``, the whole record, for field names that are not
identifiers). A field the template names that the record lacks, or holds null, is a
``template_error`` naming the field; so is any failure while rendering. Lists and objects render
as JSON, not as Python reprs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from chunkpilot.errors import ConfigError


@dataclass(frozen=True)
class PromptSpec:
    """How records become prompts, and where answers go (``run.json``'s ``prompt``).

    With neither ``template`` nor ``input_key``, records carry their own ``prompt``/``messages``
    (or are OpenAI Batch lines). ``raw``: the rendered text is a completion prompt, not a chat's
    user message. ``constraint``: the run's structured-output constraint (``requests.structured``).
    """

    template: str | None = None
    input_key: str | None = None
    system: str | None = None
    raw: bool = False
    output_key: str = "response"
    constraint: dict[str, Any] | None = None
    id_key: str = "custom_id"  # the field holding a record's custom_id
    task: str = "generate"  # or "embed": the records' texts become vectors

    def columns(self) -> set[str] | None:
        """The fields a record's prompt is made of (a format that can, reads only those); None: all."""
        if self.input_key is not None:
            return {self.input_key, self.id_key}
        if self.template is None:
            return None
        _, names, whole_record = compile_template(self.template)
        return None if whole_record else set(names) | {self.id_key}

    @property
    def from_fields(self) -> bool:
        return self.template is not None or self.input_key is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "PromptSpec":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


class TemplateProblem(Exception):
    """A record the template cannot render; the message names the field."""


def _finalize(value: Any) -> Any:
    if value is None:
        raise TemplateProblem("a value the template prints is null")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


@lru_cache(maxsize=8)
def compile_template(text: str):
    """The sandboxed template for ``text`` — the one environment submit checks and workers render
    with. ConfigError, one line, for a template that does not parse or names a filter or test the
    environment lacks (Jinja itself would let one inside an ``if`` through until a record reaches it)."""
    from jinja2 import StrictUndefined, TemplateSyntaxError, meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=_finalize,
                                        keep_trailing_newline=False)
    try:
        parsed = env.parse(text)
        _check_names(env, parsed)
        template = env.from_string(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"--prompt-template does not parse: {exc.message} (line {exc.lineno})") from None
    used = meta.find_undeclared_variables(parsed)
    return template, frozenset(used - {"record"}), "record" in used


def _check_names(env, parsed) -> None:
    """ConfigError for the first filter or test ``parsed`` uses that ``env`` does not have."""
    import difflib

    from jinja2 import nodes

    for node in parsed.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", env.filters) if isinstance(node, nodes.Filter) else ("test", env.tests)
        if node.name not in known:
            close = difflib.get_close_matches(node.name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known {kind}s: {', '.join(sorted(known))}"
            raise ConfigError(f"--prompt-template uses an unknown {kind} {node.name!r} (line {node.lineno}){hint}")


def render(spec: PromptSpec, fields: dict[str, Any]) -> str:
    """The text ``spec`` makes of a record's ``fields``; TemplateProblem naming what is wrong."""
    if spec.input_key is not None:
        value = fields.get(spec.input_key)
        if spec.input_key not in fields:
            raise TemplateProblem(f"record has no field {spec.input_key!r}")
        if value is None:
            raise TemplateProblem(f"field {spec.input_key!r} is null")
        if isinstance(value, (dict, list, bool)):
            raise TemplateProblem(f"field {spec.input_key!r} is {type(value).__name__}, not text")
        return str(value)
    template, names, _ = compile_template(spec.template)
    for name in sorted(names):
        if name not in fields:
            raise TemplateProblem(f"record has no field {name!r}")
        if fields[name] is None:
            raise TemplateProblem(f"field {name!r} is null")
    try:
        return template.render(**{k: v for k, v in fields.items() if isinstance(k, str) and k.isidentifier()}, record=fields)
    except TemplateProblem:
        raise
    except Exception as exc:  # noqa: BLE001 - jinja's errors (undefined attribute, type errors, sandbox refusals)
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from None


def load_text(value: str | None, what: str) -> str | None:
    """``value``, or the contents of the file ``@path`` names; ConfigError if that file cannot be read."""
    if value is None or not value.startswith("@"):
        return value
    path = value[1:]
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{what} {value}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {value}: {path} is not UTF-8 text") from None
