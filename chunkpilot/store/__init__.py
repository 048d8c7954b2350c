"""Open a store by URI: a local folder path, ``file://`` or ``s3://bucket/prefix``.

Registration by scheme keeps the choice at the edge; nothing else in chunkpilot
knows which kind of store it talks to.
"""

from __future__ import annotations

import os
import re

from chunkpilot.errors import ConfigError
from chunkpilot.store.base import ObjectInfo, Store, join_key
from chunkpilot.store.local import LocalStore

DEFAULT_STORE = "./runs"


def default_store_uri() -> str:
    """``$CHUNKPILOT_STORE`` or ``./runs``."""
    return os.environ.get("CHUNKPILOT_STORE") or DEFAULT_STORE


# S3's bucket naming rules (also R2's, MinIO's and GCS interop's): 3-63 lowercase letters, digits,
# dots and hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Something that starts like a URI ("s3:/x", "gs://x", "http:x"), which a local path never needs to.
_SCHEME_LIKE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_store_uri(uri: str) -> str:
    """``uri`` if it is ``s3://bucket[/prefix]``, ``file:///path`` or a local path; else ConfigError.

    Strict on purpose: ``s3:/bucket`` (one slash) is a typo, not a folder named ``s3:``.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("empty store URI: use a local folder or s3://bucket/prefix")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"invalid bucket name {bucket!r} in {uri!r}: S3 bucket names are 3-63 lowercase letters, "
                "digits, '.' and '-' (s3://bucket/prefix)"
            )
        segments = prefix.rstrip("/").split("/") if prefix.rstrip("/") else []
        if any(part in ("", ".", "..") for part in segments):
            raise ConfigError(f"invalid prefix in {uri!r}: no empty, '.' or '..' path segments")
        return uri
    if uri.startswith("file://"):
        if not uri[len("file://") :]:
            raise ConfigError(f"{uri!r} names no folder: use file:///absolute/path")
        return uri
    m = _SCHEME_LIKE.match(uri)
    if m and len(m.group(1)) > 1:  # one letter would be a Windows drive (C:\...)
        scheme = m.group(1)
        hint = "did you mean s3://bucket/prefix?" if scheme.lower() == "s3" else "use a local path or s3://bucket/prefix"
        raise ConfigError(f"unsupported store URI {uri!r}: {hint}")
    return uri


def open_store(uri: str) -> Store:
    """The store at ``uri`` (checked by ``check_store_uri``): ConfigError for anything else."""
    check_store_uri(uri)
    if uri.startswith("s3://"):
        from chunkpilot.store.s3 import S3Store

        return S3Store.from_uri(uri)
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://") :])
    return LocalStore(uri)


def split_object_uri(uri: str) -> tuple[Store, str]:
    """A store holding the object at ``uri`` and its key there (for inputs outside the run store):
    a local path, ``s3://bucket/key`` or ``hf://datasets/ORG/NAME@<commit>/path`` (read-only)."""
    if uri.startswith("hf://"):
        from chunkpilot.hf.uri import parse_dataset_uri
        from chunkpilot.store.hf import HfDatasetStore

        ref = parse_dataset_uri(uri)
        return HfDatasetStore(ref.file("")), ref.path
    if uri.startswith("s3://"):
        rest = uri[len("s3://") :]
        bucket, _, key = rest.partition("/")
        return open_store(f"s3://{bucket}"), key
    path = os.path.abspath(os.path.expanduser(uri[len("file://") :] if uri.startswith("file://") else uri))
    parent, name = os.path.split(path)
    return LocalStore(parent), name


__all__ = ["ObjectInfo", "Store", "LocalStore", "open_store", "check_store_uri", "split_object_uri", "join_key", "default_store_uri"]
