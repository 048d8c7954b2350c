"""OpenAI Files and Batches objects: what serve keeps, and the shapes the API answers with. Pure.

The records (``FileRecord``, ``BatchRecord``) are what ``chunkpilot.control.serve.state`` writes to the
store as JSON (``to_json``/``from_json`` pin that contract); ``to_openai`` gives the object
exactly as OpenAI's API names its fields, so the unmodified ``openai`` client parses it. Fields
that are serve's own bookkeeping (the tenant, the run, what is pending) never reach a client.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Sequence

# Batch statuses, as OpenAI names them.
VALIDATING, IN_PROGRESS, FINALIZING, COMPLETED = "validating", "in_progress", "finalizing", "completed"
FAILED, EXPIRED, CANCELLING, CANCELLED = "failed", "expired", "cancelling", "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, EXPIRED, CANCELLED})
# Each status and the timestamp field set when a batch enters it.
ENTERED_AT = {IN_PROGRESS: "in_progress_at", FINALIZING: "finalizing_at", COMPLETED: "completed_at",
              FAILED: "failed_at", EXPIRED: "expired_at", CANCELLING: "cancelling_at", CANCELLED: "cancelled_at"}

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
UPLOAD_PURPOSES = ("batch",)
OUTPUT_PURPOSE = "batch_output"
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
_WINDOW = re.compile(r"^([1-9][0-9]{0,3})h$")


def new_id(prefix: str, now: float | None = None) -> str:
    """``<prefix><12 hex digits of milliseconds><20 random hex digits>``: 80 random bits make it
    unguessable; the time in front makes a listing of ids sort oldest first."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{prefix}{millis:012x}{secrets.token_hex(10)}"


FILE_PREFIX, BATCH_PREFIX = "file-", "batch_"
_ID = re.compile(r"^(file-|batch_)[0-9a-f]{32}$")


def is_id(value: Any, prefix: str) -> bool:
    """Whether ``value`` is an id ``new_id(prefix)`` could have made (nothing else reaches a key)."""
    return isinstance(value, str) and value.startswith(prefix) and bool(_ID.match(value))


def window_seconds(window: Any) -> int | None:
    """Seconds of a ``completion_window`` (``"24h"``; any ``<N>h`` up to 9999 hours), None if invalid."""
    m = _WINDOW.match(window) if isinstance(window, str) else None
    return int(m.group(1)) * 3600 if m else None


def check_metadata(metadata: Any) -> str | None:
    """What is wrong with a batch's ``metadata`` (OpenAI's limits: 16 string pairs), None if nothing."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "metadata must be an object of string keys and values"
    if len(metadata) > MAX_METADATA_PAIRS:
        return f"metadata holds at most {MAX_METADATA_PAIRS} pairs"
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            return (f"metadata keys are strings of at most {MAX_METADATA_KEY} characters and values strings "
                    f"of at most {MAX_METADATA_VALUE}")
    return None


class _Record:
    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes):
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True)
class FileRecord(_Record):
    """An uploaded file (purpose ``batch``) or one serve wrote (``batch_output``)."""

    id: str
    tenant: str
    bytes: int
    created_at: int
    filename: str
    purpose: str

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None, "expires_at": None}


@dataclass(frozen=True)
class LineError:
    """One reason a batch failed: OpenAI's ``errors.data`` item (``line`` is 1-based, or None)."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


@dataclass(frozen=True)
class BatchRecord(_Record):
    """A batch and where it stands; ``run_id`` names its chunkpilot run once it is planned.

    ``pending_output``/``pending_error``: the ids its result files get, chosen before they are
    written so that finalizing again after a crash rewrites them instead of adding others.
    ``end_status``: the terminal status a batch that is finishing will take (``completed``,
    ``cancelled``, ``expired``, ``failed``).
    """

    id: str
    tenant: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    model: str | None = None
    run_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    pending_output: str | None = None
    pending_error: str | None = None
    end_status: str | None = None

    @classmethod
    def from_json(cls, data: bytes) -> "BatchRecord":
        return super().from_json(data)

    def entering(self, status: str, now: float, **changes: Any) -> "BatchRecord":
        """This batch in ``status``, its timestamp set (kept if it was set before)."""
        stamp = ENTERED_AT.get(status)
        if stamp is not None and getattr(self, stamp) is None:
            changes[stamp] = int(now)
        return replace(self, status=status, **changes)

    def failing(self, problems: Sequence[LineError], now: float) -> "BatchRecord":
        return self.entering(FAILED, now, errors=[asdict(p) for p in problems])

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "model": self.model,
            "errors": None if not self.errors else {"object": "list", "data": list(self.errors)},
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": self.in_progress_at, "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at, "completed_at": self.completed_at, "failed_at": self.failed_at,
            "expired_at": self.expired_at, "cancelling_at": self.cancelling_at, "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


def list_page(items: Sequence[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list object around ``items`` (already shaped)."""
    return {"object": "list", "data": list(items), "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def page_ids(ids: Sequence[str], after: str | None, limit: int, newest_first: bool = True) -> tuple[list[str], bool]:
    """One page of ``ids`` (sorted in the listing's order): those past ``after`` (exclusive; ids sort
    by creation, so an ``after`` that no longer exists still places the page), at most ``limit``;
    and whether more follow."""
    rest = [i for i in ids if after is None or (i < after if newest_first else i > after)]
    return rest[:limit], len(rest) > limit


@dataclass(eq=False)
class ApiError(Exception):
    """A request the API refuses: an HTTP status and OpenAI's error object."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __str__(self) -> str:
        return self.message


def not_found(what: str, ident: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"No such {what}: {ident!r}", param=param, code=f"{what}_not_found")


__all__ = ["ApiError", "BatchRecord", "FileRecord", "LineError", "list_page", "page_ids", "new_id", "is_id",
           "window_seconds", "check_metadata", "ENDPOINTS", "TERMINAL"]
