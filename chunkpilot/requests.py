"""What the worker hands an engine, and what an engine hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from chunkpilot.spec import RecordKey


@dataclass(frozen=True)
class Request:
    """One parsed input record, ready for an engine.

    ``kind`` is ``chat`` (``messages``) or ``completion`` (``prompt``); ``sampling``
    holds the run defaults already overridden by the record's own fields.
    """

    key: RecordKey
    custom_id: str
    kind: Literal["chat", "completion"]
    sampling: dict[str, Any]
    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class RecordError:
    """A record that cannot be sent to the engine; it becomes an error line."""

    key: RecordKey
    custom_id: str
    code: str
    message: str


@dataclass(frozen=True)
class Completion:
    """An engine's answer to one request (``error`` set when the engine rejected it)."""

    request_id: str
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: tuple[str, str] | None = None  # (code, message)
    extra: dict[str, Any] = field(default_factory=dict)
