"""The unmodified ``openai`` client against ``launcher serve`` on loopback (echo engine, local backend)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from chunkpilot.control.runs import list_runs
from tests.launcher.serve.conftest import KEY_A, KEY_B, batch_lines, read_lines, wait_for, write_lines

ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_batch_runs_to_completed_with_output_and_error_files(serve, tmp_path, endpoint):
    served = serve()
    client = served.client()
    good = batch_lines(24, endpoint)
    bad_body = {"model": "tiny", "max_tokens": 0} if endpoint != "/v1/embeddings" else {"model": "tiny", "input": 7}
    if endpoint == "/v1/chat/completions":
        bad_body["messages"] = [{"role": "user", "content": "x"}]
    elif endpoint == "/v1/completions":
        bad_body["prompt"] = "x"
    bad = [{"custom_id": "bad-1", "method": "POST", "url": endpoint, "body": bad_body},
           {"custom_id": "bad-2", "method": "POST", "url": endpoint, "body": {"model": "tiny", "no_input": True}}]
    lines = good[:10] + bad[:1] + good[10:] + bad[1:]
    uploaded = client.files.create(file=write_lines(tmp_path / "in.jsonl", lines).open("rb"), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == (tmp_path / "in.jsonl").stat().st_size

    batch = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h",
                                  metadata={"job": "nightly"})
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    done = wait_for(client, batch.id)

    assert done.status == "completed", done
    assert done.request_counts.total == 26 and done.request_counts.completed == 24 and done.request_counts.failed == 2
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.errors is None
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    output = read_lines(client.files.content(done.output_file_id).text)
    errors = read_lines(client.files.content(done.error_file_id).text)
    assert [r["custom_id"] for r in output] == [r["custom_id"] for r in good]  # each once, input order
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in output)
    assert {r["custom_id"] for r in errors} == {"bad-1", "bad-2"}
    assert all(r["response"] is None and r["error"]["code"] and r["error"]["message"] for r in errors)
    body = output[0]["response"]["body"]
    if endpoint == "/v1/embeddings":
        assert body["object"] == "list" and isinstance(body["data"][0]["embedding"], list)
    else:
        assert body["object"] == ("chat.completion" if "chat" in endpoint else "text_completion")
        assert body["model"] == "tiny"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    # The batch is a chunkpilot run, visible to `launcher runs` / `status`.
    runs = {r.spec.run_id: r for r in list_runs(served.store_uri)}
    assert runs["batch-" + batch.id[len("batch_"):]].state == "done"


def test_invalid_files_fail_in_validating_with_openai_errors(serve, tmp_path):
    served = serve()
    client = served.client()
    lines = batch_lines(3) + [
        "not json",
        {**batch_lines(1)[0]},  # r0 again
        {**batch_lines(1, prefix="u")[0], "url": "/v1/completions"},
        {**batch_lines(1, model="other", prefix="m")[0]},
    ]
    file = client.files.create(file=write_lines(tmp_path / "bad.jsonl", lines).open("rb"), purpose="batch")
    batch = wait_for(client, client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                                   completion_window="24h").id)
    assert batch.status == "failed" and batch.failed_at and batch.in_progress_at is None
    by_code = {e.code: e for e in batch.errors.data}
    assert set(by_code) == {"invalid_json_line", "duplicate_custom_id", "mismatched_url", "mismatched_model"}
    assert by_code["invalid_json_line"].line == 4 and by_code["duplicate_custom_id"].line == 5
    assert by_code["mismatched_url"].param == "url" and by_code["mismatched_model"].line == 7
    assert batch.output_file_id is None and batch.error_file_id is None
    assert list_runs(served.store_uri) == []  # nothing was planned

    unknown = client.files.create(file=write_lines(tmp_path / "unknown.jsonl", batch_lines(2, model="gpt-9")).open("rb"),
                                  purpose="batch")
    failed = wait_for(client, client.batches.create(input_file_id=unknown.id, endpoint="/v1/chat/completions",
                                                    completion_window="24h").id)
    assert failed.status == "failed"
    assert [(e.code, e.line) for e in failed.errors.data] == [("model_not_found", 1)]
    assert "gpt-9" in failed.errors.data[0].message and "tiny" in failed.errors.data[0].message


def test_batches_list_paginates_newest_first(serve, tmp_path):
    client = serve().client()
    file = client.files.create(file=write_lines(tmp_path / "in.jsonl", batch_lines(2)).open("rb"), purpose="batch")
    ids = [client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h").id
           for _ in range(5)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    second = client.batches.list(limit=2, after=first.data[-1].id)
    assert [b.id for b in second.data] == ids[::-1][2:4] and second.has_more
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # the client's auto-pagination
    last = client.batches.list(limit=10, after=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and not last.has_more
    for batch_id in ids:
        assert wait_for(client, batch_id).status == "completed"


def test_cancel_ends_cancelled_keeping_what_was_answered(serve, tmp_path):
    served = serve(engine_options={"delay": 0.25, "batch": 2}, commit_records=4)
    client = served.client()
    lines = batch_lines(120)
    file = client.files.create(file=write_lines(tmp_path / "in.jsonl", lines).open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_for(client, batch.id, ("in_progress",))
    deadline = time.monotonic() + 60
    while client.batches.retrieve(batch.id).request_counts.completed < 8:  # counts move while it runs
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait_for(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at and done.completed_at is None
    output = read_lines(client.files.content(done.output_file_id).text)
    ids = [r["custom_id"] for r in output]
    assert 8 <= len(ids) < len(lines) and len(set(ids)) == len(ids)
    assert set(ids) <= {line["custom_id"] for line in lines}
    assert done.request_counts.completed == len(ids) and done.request_counts.total == 120
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_keys_and_tenants(serve, tmp_path):
    served = serve()
    a, b = served.client(KEY_A), served.client(KEY_B)
    for client in (served.client(None), served.client("sk-wrong")):
        with pytest.raises(openai.AuthenticationError):
            client.batches.list()
        with pytest.raises(openai.AuthenticationError):
            client.files.create(file=write_lines(tmp_path / "x.jsonl", batch_lines(1)).open("rb"), purpose="batch")
    no_header = httpx.get(f"{served.base_url}/files")
    assert no_header.status_code == 401 and no_header.json()["error"]["code"] == "missing_api_key"

    file = a.files.create(file=write_lines(tmp_path / "in.jsonl", batch_lines(2)).open("rb"), purpose="batch")
    batch = a.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        b.files.retrieve(file.id)
    with pytest.raises(openai.NotFoundError):
        b.files.content(file.id)
    with pytest.raises(openai.NotFoundError):
        b.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):  # B cannot run a batch over A's file either
        b.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.files.list().data == [] and b.batches.list().data == []
    assert [f.id for f in a.files.list()] == [file.id]
    assert wait_for(a, batch.id).status == "completed"


def test_bad_requests_get_openai_shaped_4xx(serve, tmp_path):
    served = serve(max_upload_bytes=2000)
    client = served.client()
    small = client.files.create(file=write_lines(tmp_path / "in.jsonl", batch_lines(2)).open("rb"), purpose="batch")

    def refused(call, status: int, param: str | None = None):
        with pytest.raises(openai.APIStatusError) as info:
            call()
        assert info.value.status_code == status
        error = info.value.response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert "Traceback" not in info.value.response.text
        if param is not None:
            assert error["param"] == param
        return error

    create = client.batches.create
    refused(lambda: create(input_file_id=small.id, endpoint="/v1/images", completion_window="24h"), 400, "endpoint")
    refused(lambda: create(input_file_id=small.id, endpoint="/v1/completions", completion_window="1w"), 400,
            "completion_window")
    refused(lambda: create(input_file_id="file-nope", endpoint="/v1/completions", completion_window="24h"), 404,
            "input_file_id")
    refused(lambda: create(input_file_id=small.id, endpoint="/v1/completions", completion_window="24h",
                           metadata={"k": 1}), 400, "metadata")
    refused(lambda: client.batches.retrieve("batch_../../etc"), 404)
    refused(lambda: client.files.create(file=write_lines(tmp_path / "big.jsonl", batch_lines(40)).open("rb"),
                                        purpose="batch"), 413, "file")
    refused(lambda: client.files.create(file=(tmp_path / "in.jsonl").open("rb"), purpose="fine-tune"), 400, "purpose")
    refused(lambda: client.batches.list(limit=0), 400, "limit")
    headers = {"Authorization": f"Bearer {KEY_A}"}
    for response in (httpx.get(f"{served.base_url}/nothing", headers=headers),
                     httpx.post(f"{served.base_url}/batches", headers=headers, content=b"{not json"),
                     httpx.post(f"{served.base_url}/files", headers=headers, json={"purpose": "batch"})):
        assert 400 <= response.status_code < 500 and set(response.json()["error"]) == {"message", "type", "param", "code"}
    batch = create(input_file_id=small.id, endpoint="/v1/chat/completions", completion_window="24h")
    refused(lambda: client.files.delete(small.id), 409, "file_id")  # the input of a batch still running
    assert wait_for(client, batch.id).status == "completed"
    assert client.files.delete(small.id).deleted
    refused(lambda: client.files.retrieve(small.id), 404)


def test_models_lists_what_is_served(serve):
    client = serve(models=("tiny=echo", "mini=echo")).client()
    assert [m.id for m in client.models.list()] == ["mini", "tiny"]
    assert client.models.retrieve("tiny").owned_by == "chunkpilot"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_upload_streams_to_the_store_and_reads_back_byte_for_byte(serve, tmp_path):
    client = serve().client()
    data = b"".join(json.dumps(line).encode() + b"\n" for line in batch_lines(3000))
    (tmp_path / "big.jsonl").write_bytes(data)
    file = client.files.create(file=(tmp_path / "big.jsonl").open("rb"), purpose="batch")
    assert file.bytes == len(data) and file.filename == "big.jsonl"
    assert client.files.content(file.id).content == data
