"""Model folders in object storage: pinned by their listing, copied once, refused when changed."""

from __future__ import annotations

import pytest

import chunkpilot.model as wm
from chunkpilot.errors import ConfigError

FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"\0" * 1000, "tokenizer.json": b"{}"}


@pytest.fixture
def s3_model(s3_bucket, s3_admin_client) -> str:
    for name, body in FILES.items():
        s3_admin_client.put_object(Bucket=s3_bucket, Key=f"models/tiny/{name}", Body=body)
    return f"s3://{s3_bucket}/models/tiny/"


def test_a_model_folder_on_s3_is_pinned_by_its_listing_and_copied_once(s3_model, s3_bucket, s3_admin_client,
                                                                       tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNKPILOT_MODEL_CACHE", str(tmp_path / "models"))
    assert wm.model_kind(s3_model) == "store"
    revision = wm.model_revision(s3_model)
    assert revision.startswith("store-") and wm.model_revision(s3_model.rstrip("/")) == revision
    resolved = wm.resolve_model(s3_model)
    assert resolved.revision == revision and resolved.name == "tiny" and resolved.local
    folder = tmp_path / "models" / revision
    assert resolved.path_or_id == str(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in FILES} == FILES
    # Rewritten with the same bytes: same pin, and the copy is used again.
    s3_admin_client.put_object(Bucket=s3_bucket, Key="models/tiny/tokenizer.json", Body=b"{}")
    (folder / "marker-of-this-copy").write_text("x")
    assert wm.resolve_model(s3_model).path_or_id == str(folder) and (folder / "marker-of-this-copy").exists()
    # Changed weights: a new pin, and a worker holding the old one refuses them.
    s3_admin_client.put_object(Bucket=s3_bucket, Key="models/tiny/model.safetensors", Body=b"\1" * 1000)
    assert wm.model_revision(s3_model) != revision
    with pytest.raises(ConfigError, match="changed since the run was submitted"):
        wm.ensure_downloaded(s3_model.rstrip("/"), expected_revision=revision)


def test_an_s3_folder_without_config_is_refused(s3_bucket, s3_admin_client):
    s3_admin_client.put_object(Bucket=s3_bucket, Key="weights/model.safetensors", Body=b"x")
    with pytest.raises(ConfigError, match="has no config.json"):
        wm.model_revision(f"s3://{s3_bucket}/weights/")
