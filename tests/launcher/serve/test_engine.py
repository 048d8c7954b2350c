"""``launcher serve`` with the real vLLM CPU engine and the bundled SmolLM2 (slow: marked ``engine``)."""

from __future__ import annotations

import os

import openai
import pytest

from chunkpilot.model import DEFAULT_MODEL
from tests.launcher.serve.conftest import KEY_A, batch_lines, free_port, read_lines, start_process, wait_for, \
    write_lines

pytestmark = pytest.mark.engine


def test_chat_batch_on_vllm_cpu(tmp_path, store_uri):
    import sys

    port = free_port()
    command = [sys.executable, "-m", "launcher.cli", "serve", "--store", store_uri, "--port", str(port),
               "--engine", "vllm", "--model", f"smol={DEFAULT_MODEL}", "--chunks", "1", "--workers", "1",
               "--api-key-env", "SERVE_KEY", "--poll-seconds", "0.5"]
    proc, base = start_process(command, {**os.environ, "SERVE_KEY": KEY_A}, tmp_path / "serve.log")
    try:
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        lines = batch_lines(8, model="smol")
        file = client.files.create(file=write_lines(tmp_path / "in.jsonl", lines).open("rb"), purpose="batch")
        batch = wait_for(client, client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                                       completion_window="24h").id, timeout=600)
        output = read_lines(client.files.content(batch.output_file_id).text) if batch.output_file_id else []
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert batch.status == "completed", batch
    assert [r["custom_id"] for r in output] == [line["custom_id"] for line in lines]
    bodies = [r["response"]["body"] for r in output]
    assert {b["model"] for b in bodies} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert all(b["choices"][0]["message"]["content"].strip() and 0 < b["usage"]["completion_tokens"] <= 8 for b in bodies)
