"""Every record from the exact weights asked for: hub revisions pinned to commits (through the real
huggingface_hub client and a hub on loopback), model folders fingerprinted, changes refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chunkpilot.errors import ConfigError
from chunkpilot.fingerprint import differences, file_fingerprint, folder_files
from chunkpilot.model import ResolvedModel, check_pinned, pin_model
from tests.conftest import read_jsonl, write_jsonl
from tests.hubserver import FakeHub

SHA_MAIN = "3f2a9c0b1d2e3f405162738495a6b7c8d9e0f1a2"
SHA_V1 = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as server:
        server.repos["org/model"] = {"main": SHA_MAIN, "v1": SHA_V1}
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def test_a_branch_or_tag_is_pinned_to_its_commit_through_the_hub_client(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    assert pin_model("org/model").revision == SHA_MAIN
    assert pin_model("org/model@v1").revision == SHA_V1 and pin_model("org/model@v1").model == "org/model"
    assert [path for path, _ in hub.requests] == ["/api/models/org/model/revision/main", "/api/models/org/model/revision/v1",
                                                  "/api/models/org/model/revision/v1"]
    assert all(auth == "Bearer hf_secret_token_value" for _, auth in hub.requests), "HF_TOKEN reaches the hub"
    hub.requests.clear()
    assert pin_model(f"org/model@{SHA_V1}").revision == SHA_V1 and hub.requests == [], "a sha is taken as is"


def test_what_the_hub_does_not_know_is_a_clear_error(hub):
    with pytest.raises(ConfigError, match="has no revision 'v9' of org/model"):
        pin_model("org/model@v9")
    with pytest.raises(ConfigError, match="has no such model"):
        pin_model("org/other")


def test_an_unreachable_hub_fails_submit_unless_the_run_is_recorded_as_unpinned(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="cannot reach .* --allow-unpinned"):
        pin_model("org/model@main")
    assert pin_model("org/model@main", allow_unpinned=True).revision == "unpinned:main"


def test_a_run_carries_the_commit_from_dry_run_to_every_output_line(hub, tmp_path, store_uri, cli, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"hello {i}"} for i in range(20)])
    dry = cli("submit", path, "--chunks", 2, "--engine", "echo", "--model", "org/model@main", "--store", store_uri,
              "--dry-run")
    assert f"echo:org/model (revision {SHA_MAIN})" in dry.output
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--model", "org/model@main", "--store", store_uri,
        "--run-name", "pinned", "--watch")
    spec = json.loads((Path(store_uri) / "pinned" / "run.json").read_text())
    assert (spec["model"], spec["model_revision"]) == ("org/model", SHA_MAIN)
    cli("collect", "pinned", "--store", store_uri, "-o", tmp_path / "out.jsonl")
    bodies = [r["response"]["body"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert len(bodies) == 20 and {(b["model"], b["model_revision"]) for b in bodies} == {("org/model", SHA_MAIN)}
    status = json.loads(cli("status", "pinned", "--store", store_uri, "--json").output)
    assert status["model"] == {"engine": "echo", "name": "org/model", "revision": SHA_MAIN, "pinned": True}
    for file in Path(store_uri).rglob("*"):
        assert not file.is_file() or b"hf_secret_token_value" not in file.read_bytes(), file


def test_an_unpinned_run_says_so_in_status_and_lineage(tmp_path, store_uri, cli, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "hi"}])
    cli("submit", path, "--chunks", 1, "--engine", "echo", "--model", "org/model", "--allow-unpinned",
        "--store", store_uri, "--run-name", "loose", "--watch")
    cli("collect", "loose", "--store", store_uri, "-o", tmp_path / "out.jsonl")
    assert read_jsonl(tmp_path / "out.jsonl")[0]["response"]["body"]["model_revision"] == "unpinned:main"
    assert "UNPINNED: whatever 'main' is when each chunk starts" in cli("status", "loose", "--store", store_uri).output


def test_vllm_loads_model_and_tokenizer_from_the_pinned_commit():
    from worker.engines.vllm import VllmEngine

    pinned = ResolvedModel("org/model", "org/model", SHA_MAIN, local=False, load_revision=SHA_MAIN)
    kwargs = VllmEngine._engine_kwargs(pinned, {}, on_cpu=False)
    assert kwargs["model"] == "org/model" and kwargs["revision"] == kwargs["tokenizer_revision"] == SHA_MAIN


# -- model folders ---------------------------------------------------------------------------------


def _model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "tokenizer.json").write_text('{"version": "1.0"}')
    (path / "model.safetensors").write_bytes(bytes(range(256)) * 40_000)  # ~10 MB: sampled, not read whole
    (path / "README.md").write_text("not part of the model")
    return path


def test_a_folders_fingerprint_sees_content_changes_cheaply(tmp_path):
    folder = _model_folder(tmp_path / "m")
    files = folder_files(folder)
    assert set(files) == {"config.json", "tokenizer.json", "model.safetensors"}
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1  # in the header
    weights.write_bytes(bytes(data))
    assert file_fingerprint(weights) != files["model.safetensors"]
    (folder / "README.md").write_text("edited")
    assert folder_files(folder)["config.json"] == files["config.json"]
    assert differences(files, folder_files(folder)) == "model.safetensors changed (same size, other content)"


def test_a_model_folder_changed_after_submit_is_refused_by_the_worker(tmp_path, store_uri, cli, make_run):
    folder = _model_folder(tmp_path / "my-model")
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p {i}"} for i in range(10)])
    run = make_run([path], engine="vllm", model=str(folder))  # planned and written, nothing launched yet
    assert run.spec.model_files["tokenizer.json"].startswith("18:")
    (folder / "tokenizer.json").write_text('{"version": "2.0"}')
    with pytest.raises(ConfigError, match="tokenizer.json changed"):
        check_pinned(run.spec.model, run.spec.model_revision, run.spec.model_files)
    result = cli("watch", run.spec.run_id, "--store", store_uri, expect=1)
    assert "tokenizer.json changed" in result.output and "Refusing to answer with other weights" in result.output
    assert not list(run.run_store.list("out/")), "nothing was written to the chunk's output"
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    chunk = status["chunks"][0]
    assert chunk["state"] == "FAILED" and chunk["attempts"] == 1 and "tokenizer.json changed" in chunk["reason"]
