"""A dataset repo at a commit as a read-only store, through the real huggingface_hub client and a loopback hub."""

from __future__ import annotations

import pytest

from chunkpilot.errors import InputError, NotFoundError, StoreError
from chunkpilot.hf.api import AccessError
from chunkpilot.store import split_object_uri

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def pinned(hf_hub):
    sha = hf_hub.push("org/ds", {"data/a.jsonl": DATA, "data/sub/b.jsonl": b"{}\n", "README.md": b"# card"})
    return sha


def test_ranged_reads_are_ranged_requests_at_the_commit(hf_hub, pinned):
    store, key = split_object_uri(f"hf://datasets/org/ds@{pinned}/data/a.jsonl")
    assert key == "data/a.jsonl"
    assert store.get_range(key, 100, 300) == DATA[100:300]
    assert store.get_range(key, 10_000, 20_000) == DATA[10_000:], "a range past the end is truncated"
    assert store.get_range(key, 20_000, 20_010) == b""
    assert [(rev, rng, n) for _, rev, _, rng, n in hf_hub.reads] == [
        (pinned, "bytes=100-299", 200), (pinned, "bytes=10000-19999", 240), (pinned, "bytes=20000-20009", 0)]


def test_head_list_and_open(hf_hub, pinned):
    store, _ = split_object_uri(f"hf://datasets/org/ds@{pinned}/x")
    info = store.head("data/a.jsonl")
    assert info.size == len(DATA) and info.etag
    assert [o.key for o in store.list("data/")] == ["data/a.jsonl", "data/sub/b.jsonl"]
    assert [o.key for o in store.child("data").list()] == ["a.jsonl", "sub/b.jsonl"]
    with store.open("data/a.jsonl") as stream:
        assert stream.read() == DATA
    with pytest.raises(NotFoundError):
        store.head("data/nope.jsonl")
    assert list(store.list("nope/")) == []


def test_it_is_never_written(hf_hub, pinned):
    store, _ = split_object_uri(f"hf://datasets/org/ds@{pinned}/x")
    for call in (lambda: store.put("k", b"x"), lambda: store.put_if_absent("k", b"x"), lambda: store.delete("k"),
                 store.check_writable):
        with pytest.raises(StoreError, match="Hugging Face dataset"):
            call()


def test_a_gated_dataset_needs_hf_token_and_says_so(hf_hub, monkeypatch):
    sha = hf_hub.push("org/gated", {"a.jsonl": DATA}, gated=True, token="hf_right")
    store, key = split_object_uri(f"hf://datasets/org/gated@{sha}/a.jsonl")
    with pytest.raises(AccessError, match="gated or private dataset \\(401\\).*export HF_TOKEN") as caught:
        store.get_range(key, 0, 10)
    assert isinstance(caught.value, InputError), "a worker fails the chunk: retrying without a token cannot help"
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(AccessError, match="refused the token in HF_TOKEN \\(403\\)") as caught:
        store.get_range(key, 0, 10)
    assert "hf_wrong" not in str(caught.value)
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert store.get_range(key, 0, 10) == DATA[:10]
    assert hf_hub.requests[-1][1] == "Bearer hf_right"
