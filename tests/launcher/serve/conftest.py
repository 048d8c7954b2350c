"""Fixtures for ``launcher serve``: a server on a loopback port in this process, batch input files,
and an unmodified ``openai`` client pointed at it."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KEY_A, KEY_B = "sk-serveTenantA-7f3c9d1e", "sk-serveTenantB-2b8a6e4f"
FINAL = ("completed", "failed", "cancelled", "expired")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_lines(n: int, endpoint: str = "/v1/chat/completions", model: str = "tiny", prefix: str = "r") -> list[dict]:
    """``n`` valid OpenAI Batch request lines for ``endpoint``."""
    out = []
    for i in range(n):
        if endpoint == "/v1/chat/completions":
            body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8}
        elif endpoint == "/v1/completions":
            body = {"model": model, "prompt": f"complete {i}", "max_tokens": 8}
        else:
            body = {"model": model, "input": f"embed me {i}"}
        out.append({"custom_id": f"{prefix}{i}", "method": "POST", "url": endpoint, "body": body})
    return out


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Served:
    server: Any
    base_url: str
    store_uri: str

    def client(self, key: str | None = KEY_A):
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=key or "none", max_retries=0, timeout=30)


def wait_for(client, batch_id: str, statuses=FINAL, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status} after {timeout}s"
        time.sleep(0.2)


@pytest.fixture
def serve(store_uri, monkeypatch):
    """``serve(**run_options)`` starts a server (echo engine, model ``tiny``, tenants A and B) and
    returns a ``Served``; every server started is stopped at the end."""
    from chunkpilot.control.serve.config import ServeConfig, pin_models
    from chunkpilot.control.serve.server import Server

    started = []

    def start(keys: dict[str, str] | None = None, models=("tiny=echo",), max_upload_bytes: int = 1 << 30,
              **run_options) -> Served:
        options = {"engine": "echo", "chunks": 2, "workers": 2, "commit_seconds": 0.2, **run_options}
        config = ServeConfig(store_uri=store_uri, port=free_port(),
                             keys={"TENANT_A": KEY_A, "TENANT_B": KEY_B} if keys is None else keys,
                             models=pin_models(tuple(models), options["engine"], "local"), poll_seconds=0.2,
                             max_upload_bytes=max_upload_bytes, run_options=options)
        server = Server(config).start()
        started.append(server)
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return Served(server, f"http://127.0.0.1:{config.port}/v1", store_uri)

    yield start
    for server in started:
        server.stop()


ROOT = Path(__file__).resolve().parents[3]


def serve_command(store: str, port: int, *extra: str) -> list[str]:
    """``launcher serve`` on loopback with the echo engine serving ``tiny``, as a user starts it."""
    import sys

    return [sys.executable, "-m", "launcher.cli", "serve", "--store", store, "--port", str(port), "--engine", "echo",
            "--model", "tiny=echo", "--chunks", "2", "--workers", "2", "--poll-seconds", "0.2", *extra]


def start_process(command: list[str], env: dict[str, str], log: Path):
    """Start ``command`` (its output to ``log``) and wait until it answers HTTP on its port."""
    import subprocess

    import httpx

    out = log.open("ab")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{command[command.index('--port') + 1]}/v1"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"{base}/models", timeout=1)
            return proc, base
        except httpx.TransportError:
            assert time.monotonic() < deadline, "serve did not come up: " + log.read_text()
            time.sleep(0.1)
