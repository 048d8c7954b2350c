"""Shared fixtures: an isolated environment, a local store, input writers, the CLI, a tiny run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest_plugins = ["tests.fixtures_s3"]

MODEL_CACHE = os.environ.get("CHUNKPILOT_MODEL_CACHE") or os.path.join(
    os.environ.get("CHUNKPILOT_CACHE") or os.path.expanduser("~/.cache/chunkpilot"), "models"
)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, session_cache):
    """No test reads the user's store, cache or SkyPilot state, and polling is fast."""
    monkeypatch.delenv("CHUNKPILOT_STORE", raising=False)
    monkeypatch.setenv("CHUNKPILOT_CACHE", str(session_cache))
    # The converted model is content-addressed and never modified: share it across sessions.
    monkeypatch.setenv("CHUNKPILOT_MODEL_CACHE", MODEL_CACHE)
    monkeypatch.setenv("CHUNKPILOT_POLL_SECONDS", "0.2")
    monkeypatch.setenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", "1")
    monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def store_uri(tmp_path) -> str:
    return str(tmp_path / "runs")


def write_jsonl(path: Path, records: list, extra_lines: list[bytes] = ()) -> Path:
    """Write records (dicts are JSON-encoded, bytes written as-is) one per line."""
    with open(path, "wb") as f:
        for r in records:
            f.write(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n")
        for line in extra_lines:
            f.write(line)
    return path


@pytest.fixture
def prompts(tmp_path) -> Path:
    """120 varied prompts: completions, chats and OpenAI Batch lines."""
    records = []
    for i in range(120):
        if i % 3 == 0:
            records.append({"custom_id": f"p{i}", "prompt": f"count {i} apples and {i % 7} pears"})
        elif i % 3 == 1:
            records.append({"custom_id": f"c{i}", "messages": [{"role": "user", "content": f"say hello number {i}"}], "max_tokens": 4 + i % 5})
        else:
            records.append({"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "x", "messages": [{"role": "user", "content": f"batch line {i}"}]}})
    return write_jsonl(tmp_path / "prompts.jsonl", records)


@pytest.fixture
def cli():
    """Invoke the ``launcher`` CLI in-process; returns the click Result."""
    from launcher.cli import cli as launcher_cli

    runner = CliRunner()

    def invoke(*args: str, expect: int | None = 0):
        result = runner.invoke(launcher_cli, [str(a) for a in args], catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}:\n{result.output}"
        return result

    return invoke


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_bytes().splitlines()]


@pytest.fixture
def make_run(store_uri):
    """Plan and write a run (echo engine unless told otherwise); returns the OpenRun."""
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.submit import SubmitOptions, plan_run, write_run

    def make(inputs, chunks=1, **kw):
        kw.setdefault("engine", "echo")
        options = SubmitOptions(inputs=tuple(str(i) for i in inputs), chunks=chunks, store_uri=kw.pop("store_uri", store_uri), **kw)
        plan = plan_run(options)
        write_run(plan, options.store_uri)
        return open_run(options.store_uri, plan.spec.run_id)

    return make


def big_prompts(path: Path, n: int) -> Path:
    return write_jsonl(path, [{"custom_id": f"r{i}", "prompt": f"record {i} says hello"} for i in range(n)])


@pytest.fixture
def hf_hub(monkeypatch, tmp_path):
    """A loopback hub (``tests.hubserver.FakeHub``) the real ``huggingface_hub`` client reaches through
    HF_ENDPOINT — in this process and in the workers it starts; no token unless a test sets one."""
    from tests.hubserver import FakeHub

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login of this machine's user
        for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        yield hub
