"""Pytest fixtures for S3: a moto server on loopback, fresh buckets, and a fault proxy.

Loaded as a plugin (``pytest_plugins = ["tests.fixtures_s3"]`` in tests/conftest.py).
The server starts once per session, only when a test asks for it, so tests that
never touch S3 never pay for it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from chunkpilot.store.s3 import reset_clients
from tests.s3server import FaultProxy, MotoServer

# Variables that would point boto3 at a real account or another endpoint.
_AMBIENT_AWS_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _isolate_aws_env(mp: pytest.MonkeyPatch, home: Path) -> None:
    for name in _AMBIENT_AWS_VARS:
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Never read the developer's ~/.aws, never wait on the EC2 metadata service.
    mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("NO_PROXY", "no_proxy"):
        mp.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"])))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a session-wide moto S3 server; AWS_ENDPOINT_URL points at it.

    ``MOTO_S3_DEFAULT_MAX_KEYS=3`` makes listings paginate after three keys, so
    every listing test exercises pagination.
    """
    with pytest.MonkeyPatch.context() as mp:
        _isolate_aws_env(mp, tmp_path_factory.mktemp("aws-home"))
        with MotoServer(env={"MOTO_S3_DEFAULT_MAX_KEYS": "3"}) as server:
            mp.setenv("AWS_ENDPOINT_URL", server.endpoint)
            reset_clients()
            try:
                yield server.endpoint
            finally:
                reset_clients()


@pytest.fixture(scope="session")
def s3_admin_client(s3_server: str) -> Any:
    """A plain boto3 client talking straight to the server (never through a fault proxy)."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=s3_server)


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's environment points boto3 at the session server with its test credentials, even
    if a session fixture that started later (the SkyPilot sandbox) dropped them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    reset_clients()
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str, s3_admin_client: Any) -> str:
    """A fresh, uniquely named, empty bucket."""
    name = f"cp-test-{uuid.uuid4().hex[:12]}"
    s3_admin_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store_uri(s3_bucket: str) -> str:
    """``s3://<fresh bucket>/runs``."""
    return f"s3://{s3_bucket}/runs"


def _fast_retry_backoff(mp: pytest.MonkeyPatch) -> None:
    """Shrink botocore's backoff base (1 s for throttling) so fault tests stay fast.

    The retry decisions are still botocore's own; only the sleeps get shorter. If a
    botocore release renames the knob, tests merely get slower.
    """
    from botocore.retries.standard import ExponentialBackoff

    if isinstance(getattr(ExponentialBackoff, "_DEFAULT_BACKOFF_CONFIG", None), dict):
        mp.setattr(
            ExponentialBackoff,
            "_DEFAULT_BACKOFF_CONFIG",
            {"throttling_base_scale": 0.02, "non_throttling_base_scale": 0.01},
        )


@pytest.fixture
def fault_proxy(s3_env: str, s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session server; AWS_ENDPOINT_URL points at the proxy
    for the test, and S3 clients are rebuilt so they pick that endpoint up."""
    _fast_retry_backoff(monkeypatch)
    with FaultProxy(s3_server) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        reset_clients()
        try:
            yield proxy
        finally:
            reset_clients()
