"""A store in an S3 bucket (AWS S3, R2, MinIO, GCS interop) through boto3.

Retries come in two layers. botocore's standard retry mode retries whole
requests that fail with 5xx, throttling or a broken connection. It does *not*
retry a response body that is cut off while we stream it, so reads go through
``_ResumableBody``, which re-requests the remaining byte range (pinned to the
object's etag with ``If-Match``, so two versions are never spliced together).

Conditional writes rely on S3's ``If-None-Match: *`` and ``If-Match``. A retried
write can meet its own earlier success (the first answer was lost, the write
landed): the 412 is then resolved by comparing the stored bytes with ours.

Every botocore/urllib3 exception is turned into ``NotFoundError``/``StoreError``
in one place, ``_boto_errors``; nothing outside this module sees a boto type.
"""

from __future__ import annotations

import io
import logging
import os
import random
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator
from urllib.parse import urlparse

from chunkpilot.errors import ConfigError, NotFoundError, StoreError
from chunkpilot.retry import call
from chunkpilot.store.base import ObjectInfo, Store, join_key

if TYPE_CHECKING:  # boto3 is imported lazily: `launcher --help` must not pay for it.
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
_BODY_RETRIES = 5  # consecutive cut-off bodies tolerated per read before giving up
_CONFLICT_RETRIES = 6  # 409 ConditionalRequestConflict / vanished-after-412 rounds
_GET_CHUNK = 1 << 20

_CREDENTIALS_HINT = "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
_ENDPOINT_HINT = "check AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 and the network"


# -- the shared client -------------------------------------------------------------
_clients: dict[tuple[int, str | None, int], "BaseClient"] = {}
_clients_lock = threading.Lock()


def configured_endpoint() -> str | None:
    """The endpoint URL from the environment, as boto3 itself reads it (S3-specific first)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def shared_client(max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> "BaseClient":
    """One boto3 client per process and endpoint: clients are thread-safe and own the
    connection pool, so sharing one keeps connections warm across stores."""
    endpoint = configured_endpoint()
    # The pid is part of the key so a forked child never reuses its parent's sockets.
    key = (os.getpid(), endpoint, max_attempts)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(endpoint, max_attempts)
        return client


def reset_clients() -> None:
    """Forget every cached client, so the next store builds one from the current environment."""
    with _clients_lock:
        _clients.clear()


def _new_client(endpoint: str | None, max_attempts: int) -> "BaseClient":

    # boto3 reads AWS_ENDPOINT_URL(_S3) and profile endpoints itself; we don't pass
    # endpoint_url so all of boto3's own ways of configuring it keep working.
    client = _new_session().client("s3", config=_client_config(max_attempts, path_style=bool(endpoint)))
    if not endpoint and not _is_aws_endpoint(client.meta.endpoint_url):
        # An endpoint from ~/.aws/config (R2, MinIO): those need path-style addressing too.
        client = _new_session().client("s3", config=_client_config(max_attempts, path_style=True))
    return client


def _new_session() -> Any:
    """A boto3 session whose responses parse timestamps with ``_parse_timestamp``."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()  # a new botocore session, not a shared one
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
    return boto3.session.Session(botocore_session=core)


def _parse_timestamp(value: Any) -> datetime:
    """ISO 8601 timestamps (every ``LastModified`` of a listing) without dateutil.

    botocore's default parser goes through dateutil, which made up most of a ``status`` look
    on a big run's listing (BENCHMARKS.md §5). Anything else (HTTP dates in headers, epoch
    numbers) goes to botocore's own parser.
    """
    from botocore.utils import parse_timestamp

    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return parse_timestamp(value)


def _client_config(max_attempts: int, *, path_style: bool) -> Any:
    from botocore.config import Config

    extra: dict[str, Any] = {"s3": {"addressing_style": "path"}} if path_style else {}
    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,  # planning and collect issue requests from small thread pools
        **extra,
    )


def _is_aws_endpoint(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return any(host == domain or host.endswith("." + domain) for domain in ("amazonaws.com", "amazonaws.com.cn"))


# -- error translation: the one place boto's exceptions become ours ----------------
class _PreconditionFailed(StoreError):
    """412: the condition of a conditional request did not hold."""


class _ConditionalConflict(StoreError):
    """409 ConditionalRequestConflict: a concurrent conditional write won the race; retry."""


class _RangeNotSatisfiable(StoreError):
    """416: the requested range starts past the end of the object."""


class _BodyCutOff(StoreError):
    """The connection broke while a response body streamed; the read can resume."""


def _body_error_types() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import (
        ConnectionClosedError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import ProtocolError

    return (
        IncompleteReadError,
        ResponseStreamingError,
        ReadTimeoutError,
        ConnectionClosedError,
        ProtocolError,
        ConnectionError,  # builtin: a socket reset surfacing unwrapped
    )


@contextmanager
def _boto_errors(action: str, where: str, *, bucket: str | None = None) -> Iterator[None]:
    """Translate any botocore/urllib3 failure inside the block into NotFoundError/StoreError.

    ``bucket`` marks a bucket-level call, where a bare 404 means the bucket is missing.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except StoreError:
        raise
    except ClientError as exc:
        raise _from_client_error(exc, action, where, bucket) from exc
    except _body_error_types() as exc:
        raise _BodyCutOff(f"the connection to S3 broke during {action} of {where}: {exc}") from exc
    except BotoCoreError as exc:
        raise _from_botocore_error(exc, action, where) from exc


def _from_client_error(exc: Any, action: str, where: str, bucket: str | None) -> StoreError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = error.get("Message") or code
    if code == "NoSuchBucket" or (bucket and (code in ("404", "NotFound") or status == 404)):
        name = bucket or urlparse(where).netloc
        return StoreError(f"bucket {name!r} does not exist: create the bucket or fix the store URI ({where})")
    if code in ("NoSuchKey", "404", "NotFound"):
        return NotFoundError(f"{where} does not exist")
    if code == "PreconditionFailed" or status == 412:
        return _PreconditionFailed(f"{where} changed: a condition on {action} did not hold")
    if code == "ConditionalRequestConflict" or (status == 409 and "Conditional" in code):
        return _ConditionalConflict(f"concurrent conditional writes to {where}")
    if code == "InvalidRange" or status == 416:
        return _RangeNotSatisfiable(f"range past the end of {where}")
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        return StoreError(
            f"access denied to {where} ({action}): give these credentials s3:GetObject/PutObject/ListBucket/"
            f"DeleteObject on the bucket, or {_CREDENTIALS_HINT} for an identity that has them"
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return StoreError(f"S3 rejected the credentials ({code}) for {where}: {_CREDENTIALS_HINT} to valid ones")
    return StoreError(f"cannot {action} {where}: {code}: {message}")


def _from_botocore_error(exc: Any, action: str, where: str) -> StoreError:
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreError(f"no usable AWS credentials found for {where}: {_CREDENTIALS_HINT}")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        endpoint = configured_endpoint() or _origin(str(exc.kwargs.get("endpoint_url", ""))) or "AWS"
        return StoreError(f"cannot reach the S3 endpoint ({endpoint}) to {action} {where}: {_ENDPOINT_HINT}")
    return StoreError(f"cannot {action} {where}: {exc}")


def _quoted(etag: str) -> str:
    """An etag as HTTP conditional headers want it: in double quotes."""
    return '"' + etag.strip('"') + '"'


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL: the endpoint without a bucket or key path."""
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""


def _pause(attempt: int) -> None:
    """Jittered exponential backoff before resuming a cut-off body (a stream, not a call to retry)."""
    time.sleep(random.random() * min(2.0, 0.05 * 2**attempt))


# -- reads that survive a cut-off body ---------------------------------------------
class _ResumableBody(io.RawIOBase):
    """Bytes ``[pos, end)`` of one object version; a broken body is resumed from the
    offset reached with a new ranged GET pinned to the same etag."""

    def __init__(self, store: "S3Store", key: str, pos: int, end: int, etag: str, body: Any):
        super().__init__()
        self._store, self._key, self._pos, self._end, self._etag, self._body = store, key, pos, end, etag, body
        self._failures = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._end - self._pos)
        if want <= 0:
            return 0
        while True:
            try:
                with _boto_errors("read", self._store._where(self._key)):
                    chunk = self._body.read(want)
                if not chunk:
                    raise _BodyCutOff(f"{self._store._where(self._key)} ended early at byte {self._pos}")
            except _BodyCutOff as exc:
                self._resume(exc)
                continue
            self._failures = 0
            n = len(chunk)
            memoryview(buffer)[:n] = chunk
            self._pos += n
            return n

    def read_all(self) -> bytes:
        """Everything left, in one buffer (no 8 KiB steps as RawIOBase.readall would take)."""
        out = bytearray(self._end - self._pos)
        view, filled = memoryview(out), 0
        while filled < len(out):
            filled += self.readinto(view[filled : filled + _GET_CHUNK])
        self.close()
        return bytes(out)

    def _resume(self, exc: StoreError) -> None:
        if self._failures >= _BODY_RETRIES:
            raise exc
        _pause(self._failures)
        self._failures += 1
        log.debug("resuming %s at byte %d after: %s", self._store._where(self._key), self._pos, exc)
        self._close_body()
        try:
            self._body, _, _ = self._store._get_object(self._key, self._pos, self._end, if_match=self._etag)
        except _PreconditionFailed as changed:
            raise StoreError(f"{self._store._where(self._key)} was replaced while being read; read it again") from changed

    def _close_body(self) -> None:
        try:
            self._body.close()
        except Exception:  # the connection is already broken; nothing to clean up
            pass

    def close(self) -> None:
        if not self.closed:
            self._close_body()
        super().close()


class S3Store(Store):
    """A store rooted at ``s3://<bucket>/<prefix>``."""

    parallel_reads = 16  # each read is a round trip: overlap them (the client pools 32 connections)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: "BaseClient | None" = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ):
        if not bucket:
            raise ConfigError("an s3:// store needs a bucket: s3://<bucket>/<prefix>")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client_override = client
        self._max_attempts = max_attempts
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> "S3Store":
        """``s3://bucket`` or ``s3://bucket/some/prefix`` (a trailing ``/`` is ignored)."""
        if not uri.startswith("s3://"):
            raise ConfigError(f"not an s3:// URI: {uri!r}")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return cls(bucket, prefix, **kwargs)

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    @property
    def _client(self) -> "BaseClient":
        # Looked up per call, so reset_clients() (e.g. a changed endpoint) reaches live stores.
        return self._client_override or shared_client(self._max_attempts)

    # -- keys ----------------------------------------------------------------
    def _object_key(self, key: str) -> str:
        if not key or key.startswith("/") or any(part in ("..", ".") for part in key.split("/")):
            raise StoreError(f"invalid store key {key!r}")
        return join_key(self.prefix, key)

    def _where(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def child(self, prefix: str) -> "S3Store":
        return S3Store(self.bucket, self._object_key(prefix), self._client_override, max_attempts=self._max_attempts)

    # -- reads ---------------------------------------------------------------
    def _get_object(self, key: str, start: int, end: int | None, *, if_match: str | None = None) -> tuple[Any, int, str]:
        """One GET of ``[start, end)`` (``end=None``: to the end); returns (body, end reached, etag)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._object_key(key)}
        if start > 0 or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if if_match:
            args["IfMatch"] = _quoted(if_match)
        with _boto_errors("read", self._where(key)):
            response = self._client.get_object(**args)
        if "Range" in args and not response.get("ContentRange"):
            if start > 0:  # a server that ignores Range would hand us the wrong bytes
                response["Body"].close()
                raise StoreError(f"the S3 endpoint ignored a Range request for {self._where(key)}")
        reached = start + int(response["ContentLength"])
        return response["Body"], reached if end is None else min(reached, end), response["ETag"].strip('"')

    def _reader(self, key: str, start: int, end: int | None) -> _ResumableBody:
        body, reached, etag = self._get_object(key, start, end)
        return _ResumableBody(self, key, start, reached, etag, body)

    def get(self, key: str) -> bytes:
        return self._reader(key, 0, None).read_all()

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        try:
            return self._reader(key, start, end).read_all()
        except _RangeNotSatisfiable:
            return b""

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(self._reader(key, 0, None), buffer_size=_GET_CHUNK)  # type: ignore[return-value]

    def head(self, key: str) -> ObjectInfo:
        with _boto_errors("stat", self._where(key)):
            response = self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        return ObjectInfo(
            key, int(response["ContentLength"]), response["ETag"].strip('"'), response["LastModified"].timestamp()
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Lazily, page by page; S3 already returns keys in sorted (UTF-8 byte) order."""
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        with _boto_errors("list", f"{self.uri}/{prefix}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix.lstrip("/")):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):
                        continue  # a console's "folder" placeholder, not an object
                    yield ObjectInfo(
                        obj["Key"][len(root) :], int(obj["Size"]), obj["ETag"].strip('"'), obj["LastModified"].timestamp()
                    )

    # -- writes --------------------------------------------------------------
    def _put_object(self, key: str, data: bytes, **conditions: str) -> None:
        with _boto_errors("write", self._where(key)):
            self._client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data, **conditions)

    def put(self, key: str, data: bytes) -> None:
        self._put_object(key, data)

    def put_file(self, key: str, path: str) -> None:
        """boto3's managed transfer: multipart, parallel and retried part by part for big files;
        S3 makes the object visible only once every part is in (atomic)."""
        from boto3.exceptions import S3UploadFailedError

        try:
            with _boto_errors("write", self._where(key)):
                self._client.upload_file(path, self.bucket, self._object_key(key))
        except S3UploadFailedError as exc:
            raise StoreError(f"cannot write {self._where(key)}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {path} to upload it: {exc.strerror or exc}") from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        def attempt() -> bool:
            try:
                self._put_object(key, data, IfNoneMatch="*")
                return True
            except _PreconditionFailed:
                # Possibly our own write whose answer was lost and then retried by botocore.
                stored = self._stored_bytes(key)
                if stored is None:  # gone again meanwhile (deleted): a conflict round
                    raise _ConditionalConflict(f"{self._where(key)} vanished after a 412") from None
                return stored == data

        return self._conditional(key, attempt)

    def put_if_match(self, key: str, data: bytes, etag: str) -> bool:
        def attempt() -> bool:
            try:
                self._put_object(key, data, IfMatch=_quoted(etag))
                return True
            except NotFoundError:
                return False
            except _PreconditionFailed:
                # Same lost-answer case as put_if_absent: if the stored bytes are ours, we wrote them.
                return self._stored_bytes(key) == data

        return self._conditional(key, attempt)

    def _conditional(self, key: str, attempt) -> bool:
        """A conditional write, retried while it meets concurrent conditional writes (409)."""
        try:
            return call(attempt, lambda exc: isinstance(exc, _ConditionalConflict), attempts=_CONFLICT_RETRIES,
                        first=0.05, cap=2.0)
        except _ConditionalConflict:
            raise StoreError(f"cannot write {self._where(key)}: concurrent conditional writes kept conflicting") from None

    def _stored_bytes(self, key: str) -> bytes | None:
        try:
            return self.get(key)
        except NotFoundError:
            return None

    def delete(self, key: str) -> None:
        with _boto_errors("delete", self._where(key)):
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def check_writable(self) -> None:
        """A HEAD on the bucket: proves it exists, is reachable and the credentials are accepted."""
        with _boto_errors("access", self.uri, bucket=self.bucket):
            self._client.head_bucket(Bucket=self.bucket)


__all__ = ["S3Store", "reset_clients", "shared_client", "configured_endpoint", "DEFAULT_MAX_ATTEMPTS"]
