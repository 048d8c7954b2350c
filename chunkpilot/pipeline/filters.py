"""Filter steps: a safe expression over a record's fields that keeps (true) or drops (false) it.

The language is a Jinja expression compiled in the same sandboxed environment prompts use
(``jinja2.sandbox.ImmutableSandboxedEnvironment``), narrowed further: field names, literals,
comparisons (``== != < <= > >= in``, ``not in``), ``and`` / ``or`` / ``not``, arithmetic,
subscripts (``labels['a']``, ``items[0]``), the tests ``is defined/none/number/string`` and
the filters in ``FILTERS``. No attribute access (``x.y``) and no calls (``f()``): a filter can
read the record and nothing else. Never ``eval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from chunkpilot.errors import ConfigError

# The filters an expression may use, documented in docs/guides/pipelines.md ("Filters").
FILTERS = ("abs", "default", "first", "float", "int", "last", "length", "lower", "round", "string", "trim", "upper")
TESTS = ("defined", "undefined", "none", "number", "string", "mapping", "sequence", "true", "false", "in",
         "eq", "ne", "lt", "le", "gt", "ge", "odd", "even")


@dataclass(frozen=True)
class CompiledFilter:
    """A checked filter expression: ``keep(fields)`` says whether a record passes; ``fields``
    are the names it reads (for submit's unknown-field check)."""

    expression: str
    fields: frozenset[str]
    _evaluate: Callable[..., Any]

    def keep(self, record: dict[str, Any]) -> bool:
        """True if the record passes. A field the record lacks reads as undefined (falsy; ``is
        defined`` tells); an expression that fails on a record (a type error) drops it: FilterProblem
        says why, so the caller records the reason."""
        try:
            values = {k: v for k, v in record.items() if isinstance(k, str) and k.isidentifier()}
            return bool(self._evaluate(**values))
        except Exception as exc:  # noqa: BLE001 - jinja's runtime errors on odd values
            raise FilterProblem(f"{type(exc).__name__}: {exc}") from None


class FilterProblem(Exception):
    """A record the filter expression cannot be evaluated on."""


@lru_cache(maxsize=32)
def compile_filter(expression: str) -> CompiledFilter:
    """The checked expression; ConfigError (one line, without the step's name: the caller adds it)
    for one that does not parse or uses what the language leaves out."""
    from jinja2 import TemplateSyntaxError, meta, nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError("filter: give an expression over the record's fields, e.g. \"label == 'yes'\"")
    env = ImmutableSandboxedEnvironment()
    try:
        parsed = env.parse("{{ (" + expression + ") }}")
    except TemplateSyntaxError as exc:
        raise ConfigError(f"filter {expression!r} does not parse: {exc.message}") from None
    for node in parsed.find_all((nodes.Getattr, nodes.Call, nodes.Filter, nodes.Test)):
        if isinstance(node, nodes.Getattr):
            raise ConfigError(f"filter {expression!r}: attribute access (.{node.attr}) is not allowed; "
                              f"use a subscript, e.g. x['{node.attr}']")
        if isinstance(node, nodes.Call):
            raise ConfigError(f"filter {expression!r}: calls are not allowed; use a filter, e.g. x | length")
        known = FILTERS if isinstance(node, nodes.Filter) else TESTS
        if node.name not in known:
            import difflib

            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            close = difflib.get_close_matches(node.name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(known)}"
            raise ConfigError(f"filter {expression!r}: unknown {kind} {node.name!r}{hint}")
    try:
        evaluate = env.compile_expression(expression, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"filter {expression!r} does not parse: {exc.message}") from None
    return CompiledFilter(expression, frozenset(meta.find_undeclared_variables(parsed)), evaluate)
