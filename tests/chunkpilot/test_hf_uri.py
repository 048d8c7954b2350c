"""hf://datasets/ORG/NAME[@REVISION][/path]: parsed, and written back with the commit pinned."""

from __future__ import annotations

import pytest

from chunkpilot.errors import InputError
from chunkpilot.hf.uri import DatasetRef, parse_dataset_uri

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("uri, expected", [
    ("hf://datasets/org/name", DatasetRef("org/name")),
    ("hf://datasets/org/name@main", DatasetRef("org/name", "main")),
    ("hf://datasets/org/name@v1.0/data/train-0.parquet", DatasetRef("org/name", "v1.0", "data/train-0.parquet")),
    ("hf://datasets/org/name/data/", DatasetRef("org/name", None, "data")),
    ("hf://datasets/org/name@refs/convert/parquet/default/train/0000.parquet",
     DatasetRef("org/name", "refs/convert/parquet", "default/train/0000.parquet")),
    ("hf://datasets/org/name@refs%2Fpr%2F3/a.jsonl", DatasetRef("org/name", "refs/pr/3", "a.jsonl")),
])
def test_parse(uri, expected):
    assert parse_dataset_uri(uri) == expected


def test_a_pinned_ref_names_its_commit_and_reads_back_the_same():
    ref = parse_dataset_uri("hf://datasets/org/name@refs/convert/parquet/default/train/0000.parquet").at(SHA)
    assert ref.pinned and ref.uri == f"hf://datasets/org/name@{SHA}/default/train/0000.parquet"
    assert parse_dataset_uri(ref.uri) == ref
    assert not parse_dataset_uri("hf://datasets/org/name@main").pinned
    # A revision with slashes is written with %2F, so the path after it stays unambiguous.
    assert DatasetRef("org/name", "refs/pr/3", "x").uri == "hf://datasets/org/name@refs%2Fpr%2F3/x"


@pytest.mark.parametrize("uri, message", [
    ("hf://org/model", "models and spaces are not inputs"),
    ("hf://datasets/org", "expected hf://datasets/ORG/NAME"),
    ("hf://datasets/org/na..me", "expected hf://datasets/ORG/NAME"),
    ("hf://datasets/org/name/../secret", "invalid path"),
    ("hf://datasets/org/name@a..b", "invalid revision"),
])
def test_what_is_not_a_dataset_uri_is_refused_clearly(uri, message):
    with pytest.raises(InputError, match=message):
        parse_dataset_uri(uri)
