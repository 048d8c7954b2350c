"""A short string that a regular expression matches in full, for the echo engine's ``--regex`` answers.

Built from the pattern's parse by Python's own ``re`` parser: literals as written, the first
character a class allows, each repeat at its minimum, a group's first alternative, anchors as
nothing. Lookarounds and conditional groups are not followed: ``regex_example`` returns None for
them, and for anything whose result ``re.fullmatch`` would not accept — it never returns a string
the pattern does not match. Pure and deterministic.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+
    from re import _constants as C
    from re import _parser as P
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse as P  # type: ignore[no-redef]

_CATEGORY = {  # a character of each category
    C.CATEGORY_DIGIT: "0", C.CATEGORY_NOT_DIGIT: "a", C.CATEGORY_SPACE: " ", C.CATEGORY_NOT_SPACE: "a",
    C.CATEGORY_WORD: "a", C.CATEGORY_NOT_WORD: " ",
}
_CANDIDATES = "a0 AbzZ9_-.x"  # tried in turn for a negated class


class _Unsupported(Exception):
    pass


def regex_example(pattern: str) -> str | None:
    """A string ``pattern`` fully matches, or None if this cannot build one (or ``pattern`` is not a regex)."""
    try:
        text = _build(P.parse(pattern), {})
    except (_Unsupported, re.error, RecursionError):
        return None
    return text if re.fullmatch(pattern, text) else None


def _build(parsed: Any, groups: dict[int, str]) -> str:
    out = []
    for op, av in parsed:
        if op is C.LITERAL:
            out.append(chr(av))
        elif op is C.NOT_LITERAL:
            out.append("a" if av != ord("a") else "b")
        elif op is C.ANY:
            out.append("a")
        elif op is C.IN:
            out.append(_one_of(av))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) or op is getattr(C, "POSSESSIVE_REPEAT", None):
            low, _, sub = av
            out.append(_build(sub, groups) * low)
        elif op is C.SUBPATTERN:
            group, _, _, sub = av
            text = _build(sub, groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op is getattr(C, "ATOMIC_GROUP", None):
            out.append(_build(av, groups))
        elif op is C.BRANCH:
            out.append(_build(av[1][0], groups))
        elif op is C.AT:
            continue
        elif op is C.GROUPREF:
            out.append(groups.get(av, ""))
        else:  # ASSERT, ASSERT_NOT, GROUPREF_EXISTS: not followed
            raise _Unsupported(str(op))
    return "".join(out)


def _one_of(items: list) -> str:
    """A character a class ``[...]`` allows."""
    if items and items[0][0] is C.NEGATE:
        for char in _CANDIDATES:
            if not _in(ord(char), items[1:]):
                return char
        raise _Unsupported("negated class")
    op, av = items[0]
    if op is C.LITERAL:
        return chr(av)
    if op is C.RANGE:
        return chr(av[0])
    if op is C.CATEGORY and av in _CATEGORY:
        return _CATEGORY[av]
    raise _Unsupported(str(op))


def _in(code: int, items: list) -> bool:
    for op, av in items:
        if (op is C.LITERAL and av == code) or (op is C.RANGE and av[0] <= code <= av[1]):
            return True
        if op is C.CATEGORY and re.fullmatch({v: k for k, v in _PATTERNS.items()}.get(av, "(?!)"), chr(code)):
            return True
    return False


_PATTERNS = {r"\d": C.CATEGORY_DIGIT, r"\D": C.CATEGORY_NOT_DIGIT, r"\s": C.CATEGORY_SPACE,
             r"\S": C.CATEGORY_NOT_SPACE, r"\w": C.CATEGORY_WORD, r"\W": C.CATEGORY_NOT_WORD}
