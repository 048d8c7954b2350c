"""``launcher serve`` SIGKILLed mid-batch and started again: the batch completes, every record once."""

from __future__ import annotations

import os
import signal
import time

import openai

from tests.launcher.serve.conftest import KEY_A, batch_lines, free_port, read_lines, serve_command, start_process, \
    wait_for, write_lines


def test_serve_killed_and_restarted_mid_batch_completes_every_record_once(tmp_path, store_uri):
    port = free_port()
    env = {**os.environ, "SERVE_KEY": KEY_A}
    command = serve_command(store_uri, port, "--api-key-env", "SERVE_KEY", "--engine-option", "delay=0.2",
                            "--engine-option", "batch=2", "--commit-seconds", "0.3")
    log = tmp_path / "serve.log"
    proc, base = start_process(command, env, log)
    try:
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        lines = batch_lines(160)
        file = client.files.create(file=write_lines(tmp_path / "in.jsonl", lines).open("rb"), purpose="batch")
        batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.monotonic() + 90
        while (seen := client.batches.retrieve(batch.id)).request_counts.completed < 10:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert seen.status == "in_progress" and seen.request_counts.completed < len(lines)
        proc.send_signal(signal.SIGKILL)  # no cleanup of any kind: the workers it launched live on
        proc.wait(timeout=10)
        with open(log, "ab") as f:
            f.write(b"--- restarted ---\n")
        proc, base = start_process(command, env, log)
        client = openai.OpenAI(base_url=base, api_key=KEY_A, max_retries=0)
        done = wait_for(client, batch.id, timeout=180)
        output = read_lines(client.files.content(done.output_file_id).text) if done.output_file_id else []
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert done.status == "completed", (done, log.read_text()[-3000:])
    assert [r["custom_id"] for r in output] == [line["custom_id"] for line in lines]
    assert done.request_counts.completed == len(lines) and done.error_file_id is None
    assert "Traceback" not in log.read_text()
