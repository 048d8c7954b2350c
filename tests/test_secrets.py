"""Credentials reach jobs only through the environment: a whole run writes none of them anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from chunkpilot.store.s3 import reset_clients

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "SECRETawsKEY0123456789abcdef",
    "HF_TOKEN": "hf_SECRETtokenValue987654321",
    "OPENAI_API_KEY": "sk-SECRETopenaiKey55555",
}


def scan(blobs: dict[str, bytes]) -> list[str]:
    return [f"{name} contains {var}" for name, data in blobs.items() for var, value in SECRETS.items()
            if value.encode() in data]


@pytest.fixture
def secret_env(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    reset_clients()
    yield
    reset_clients()


def test_local_run_on_s3_writes_no_credential(tmp_path, cli, prompts, s3_bucket, s3_store_uri, s3_admin_client,
                                              session_cache, secret_env):
    outputs = []
    outputs.append(cli("submit", prompts, "--chunks", 2, "--engine", "echo", "--store", s3_store_uri,
                       "--run-name", "secrets", "--workers", 2, "--watch").output)
    outputs.append(cli("status", "secrets", "--store", s3_store_uri).output)
    outputs.append(cli("status", "secrets", "--store", s3_store_uri, "--json").output)
    outputs.append(cli("collect", "secrets", "--store", s3_store_uri, "-o", tmp_path / "out.jsonl").output)
    outputs.append(cli("runs", "--store", s3_store_uri).output)

    blobs: dict[str, bytes] = {f"stdout[{i}]": o.encode() for i, o in enumerate(outputs)}
    pages = s3_admin_client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any(k.endswith("_SUCCESS") for k in keys)
    for key in keys:
        blobs[f"s3://{s3_bucket}/{key}"] = s3_admin_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    local_files = [p for p in (session_cache / "runs" / "secrets").rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in local_files)
    for path in [*local_files, tmp_path / "out.jsonl"]:
        blobs[str(path)] = Path(path).read_bytes()
    assert scan(blobs) == []
    # The scan itself can fail: the secret is really in the workers' environment.
    assert scan({"env": "\n".join(f"{k}={v}" for k, v in SECRETS.items()).encode()})


def test_served_batches_write_no_key(tmp_path, store_uri, secret_env):
    """``launcher serve --api-key-env OPENAI_API_KEY``: a batch uploaded, run, collected, read back,
    and a request with a wrong key; the key is in no file of the store (logs included) and
    nowhere in what the server printed."""
    import os

    import openai

    from tests.launcher.serve.conftest import batch_lines, free_port, serve_command, start_process, wait_for, write_lines

    key = SECRETS["OPENAI_API_KEY"]
    log = tmp_path / "serve.log"
    proc, base = start_process(serve_command(store_uri, free_port(), "--api-key-env", "OPENAI_API_KEY"),
                               dict(os.environ), log)
    try:
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
        file = client.files.create(file=write_lines(tmp_path / "in.jsonl", batch_lines(20)).open("rb"), purpose="batch")
        batch = wait_for(client, client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                                       completion_window="24h").id)
        assert batch.status == "completed"
        assert client.files.content(batch.output_file_id).text
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key=key[:-1], max_retries=0).batches.list()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    files = [p for p in Path(store_uri).rglob("*") if p.is_file()]
    assert any(p.name.endswith(".log") for p in files) and any("_serve" in p.parts for p in files)
    blobs = {str(p): p.read_bytes() for p in files}
    blobs["serve output"] = log.read_bytes()
    assert scan(blobs) == []
