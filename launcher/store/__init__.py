"""Open a store by URI: a local folder path, ``file://`` or ``s3://bucket/prefix``.

Registration by scheme keeps the choice at the edge; nothing else in chunkpilot
knows which kind of store it talks to.
"""

from __future__ import annotations

import os

from launcher.errors import ConfigError
from launcher.store.base import ObjectInfo, Store, join_key
from launcher.store.local import LocalStore

DEFAULT_STORE = "./runs"


def default_store_uri() -> str:
    """``$CHUNKPILOT_STORE`` or ``./runs``."""
    return os.environ.get("CHUNKPILOT_STORE") or DEFAULT_STORE


def open_store(uri: str) -> Store:
    """The store at ``uri``. Raises ConfigError for a scheme chunkpilot cannot talk to."""
    if uri.startswith("s3://"):
        from launcher.store.s3 import S3Store

        return S3Store.from_uri(uri)
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://") :])
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ConfigError(f"unsupported store scheme {scheme!r} in {uri!r}: use a local path or s3://bucket/prefix")
    return LocalStore(uri)


def split_object_uri(uri: str) -> tuple[Store, str]:
    """A store holding the object at ``uri`` and its key there (for inputs outside the run store)."""
    if uri.startswith("s3://"):
        rest = uri[len("s3://") :]
        bucket, _, key = rest.partition("/")
        return open_store(f"s3://{bucket}"), key
    path = os.path.abspath(os.path.expanduser(uri[len("file://") :] if uri.startswith("file://") else uri))
    parent, name = os.path.split(path)
    return LocalStore(parent), name


__all__ = ["ObjectInfo", "Store", "LocalStore", "open_store", "split_object_uri", "join_key", "default_store_uri"]
