"""The Hugging Face Hub's dataset endpoints, through ``huggingface_hub``: the only module that calls them.

``HF_ENDPOINT`` (a mirror, or a test server) and ``HF_TOKEN`` (gated and private datasets) are
read from the environment at each call (without HF_TOKEN, the token ``hf auth login`` saved, as
``huggingface_hub`` does); the token goes to the hub in a header and is written nowhere — not in a URI, an error message or a log line. ``huggingface_hub``'s exceptions are
turned into chunkpilot's here, and only here (``hub_error``).

A ranged read is one ``GET …/resolve/<commit>/<path>`` with a ``Range`` header, retried by
``huggingface_hub.utils.http_backoff`` on 429/5xx and dropped connections — the same request
``HfFileSystem``'s files make, without its per-read directory lookups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from chunkpilot.errors import ChunkpilotError, InputError, NotFoundError, StoreError
from chunkpilot.hf.uri import COMMIT_SHA, DatasetRef

TIMEOUT = 30.0


class AccessError(StoreError, InputError):
    """The hub refused a dataset without a token, or with one that has no access (gated or private).

    A StoreError, as every store failure is; an InputError too: retrying will not help, and a
    worker fails the chunk with this message instead of retrying it."""


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    etag: str  # the file's content hash: its LFS sha256, or its git blob id


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _where() -> str:
    return endpoint() or "the Hugging Face Hub"


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def has_token() -> bool:
    """Whether a token will be sent: HF_TOKEN, or the one ``hf auth login`` saved (never shown)."""
    from huggingface_hub import get_token

    return get_token() is not None


def _api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=_token())


def hub_error(exc: Exception, what: str, missing_is: type[ChunkpilotError] = InputError) -> ChunkpilotError:
    """The chunkpilot error for ``exc`` (from ``huggingface_hub`` or ``httpx``) met doing ``what``
    (a sentence start naming the dataset). A repo, revision or file the hub does not have becomes
    ``missing_is``; 401/403 (gated, private) an ``AccessError`` naming HF_TOKEN; the rest a StoreError."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError)):
        if has_token():
            return AccessError(f"{what}: {_where()} refused the token in HF_TOKEN ({status}): it is a gated or private "
                               "dataset this account has no access to (accept its terms on its page)")
        return AccessError(f"{what}: a gated or private dataset ({status}): accept its terms on the hub and export "
                           "HF_TOKEN (passed to sky jobs as a secret)")
    if isinstance(exc, RevisionNotFoundError):
        return missing_is(f"{what}: {_where()} has no such revision")
    if isinstance(exc, EntryNotFoundError):
        return missing_is(f"{what}: no such file or folder in the dataset")
    if isinstance(exc, RepositoryNotFoundError):
        hint = "" if has_token() else " (or it is private: export HF_TOKEN)"
        return missing_is(f"{what}: {_where()} has no such dataset{hint}")
    if isinstance(exc, HfHubHTTPError):
        return StoreError(f"{what}: {_where()} answered {status}")
    return StoreError(f"{what}: cannot reach {_where()} ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class DatasetState:
    """What the hub says of a dataset at a revision: the commit it names, whether it is gated, its card."""

    sha: str
    gated: bool
    card: dict[str, Any]


def dataset_state(ref: DatasetRef) -> DatasetState:
    """The commit ``ref.revision`` (the default branch if None) names now, and the dataset's card data.
    InputError for an unknown dataset or revision; AccessError for a private one without a token."""
    what = f"dataset {ref.repo_id}" + (f"@{ref.revision}" if ref.revision else "")
    try:
        info = _api().dataset_info(ref.repo_id, revision=ref.revision, timeout=TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - translated in one place
        raise hub_error(exc, what) from None
    sha = info.sha
    if not isinstance(sha, str) or not COMMIT_SHA.match(sha):
        raise InputError(f"{what}: {_where()} answered no commit sha (got {sha!r})")
    card = info.card_data.to_dict() if info.card_data is not None else {}
    return DatasetState(sha, bool(info.gated), card)


def list_files(ref: DatasetRef, under: str = "") -> list[HubFile]:
    """Every file under ``under`` ("" : the whole repo) at ``ref.revision``, recursively, sorted.
    ``NotFoundError`` when there is no such folder."""
    what = f"dataset {ref.repo_id}@{ref.revision}" + (f" folder {under}" if under else "")
    try:
        tree = _api().list_repo_tree(ref.repo_id, under or None, recursive=True, revision=ref.revision,
                                     repo_type="dataset")
        files = [_hub_file(item) for item in tree if hasattr(item, "size") and not hasattr(item, "tree_id")]
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, what, NotFoundError) from None
    return sorted(files, key=lambda f: f.path)


def path_info(ref: DatasetRef, path: str) -> HubFile | None:
    """The file at ``path`` at ``ref.revision``; None when ``path`` is a folder. NotFoundError when neither."""
    try:
        found = _api().get_paths_info(ref.repo_id, [path], revision=ref.revision, repo_type="dataset")
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, f"{ref.repo_id}@{ref.revision}/{path}", NotFoundError) from None
    if not found:
        raise NotFoundError(f"{ref.repo_id}@{ref.revision}/{path}: no such file or folder in the dataset")
    item = found[0]
    return _hub_file(item) if hasattr(item, "blob_id") else None


def _hub_file(item: Any) -> HubFile:
    lfs = getattr(item, "lfs", None)
    sha256 = (lfs.get("sha256") or lfs.get("oid")) if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    return HubFile(item.path, int(item.size), str(sha256 or item.blob_id))


def read_range(ref: DatasetRef, path: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the file at ``path`` at ``ref.revision`` (fewer past its end)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    if end <= start:
        return b""
    url = hf_hub_url(ref.repo_id, path, repo_type="dataset", revision=ref.revision, endpoint=endpoint())
    headers = {"Range": f"bytes={start}-{end - 1}", **build_hf_headers(token=_token())}
    what = f"{ref.repo_id}@{ref.revision}/{path}"
    try:
        response = http_backoff("GET", url, headers=headers, timeout=TIMEOUT)
        if response.status_code == 416:  # the range starts past the end
            return b""
        hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, what, NotFoundError) from None
    data = response.content
    if response.status_code == 200:  # a server that ignores Range sends everything: keep the range
        data = data[start:end]
    return data
