"""A config's split: which files of a dataset repo hold it (pure)."""

from __future__ import annotations

import pytest

from chunkpilot.errors import InputError
from chunkpilot.hf.files import card_configs, is_candidate, select_files, splits_by_name

PARQUET_SHARDS = ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                  "data/test-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"]


def test_split_names_in_file_names_as_the_hub_writes_parquet_shards():
    chosen = select_files(PARQUET_SHARDS, None, None, "train", "org/ds")
    assert chosen.paths == ("data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet")
    assert chosen.config == "default" and set(chosen.splits) == {"train", "test", "validation"}
    assert select_files(PARQUET_SHARDS, None, None, "validation", "org/ds").paths == ("data/validation-00000-of-00001.parquet",)


def test_split_names_in_folders_win_over_file_names_and_synonyms_count():
    paths = ["dev/part-0.jsonl", "train/part-0.jsonl", "train/part-1.jsonl", "train/test-notes.jsonl"]
    assert splits_by_name(paths) == {"train": ["train/part-0.jsonl", "train/part-1.jsonl", "train/test-notes.jsonl"],
                                     "validation": ["dev/part-0.jsonl"]}
    assert select_files(paths, None, None, "validation", "org/ds").paths == ("dev/part-0.jsonl",)


def test_files_naming_no_split_are_the_train_split_and_a_lone_split_needs_no_flag():
    chosen = select_files(["a.jsonl", "b.jsonl"], None, None, None, "org/ds")
    assert (chosen.split, chosen.paths) == ("train", ("a.jsonl", "b.jsonl"))
    # "contest" holds "test" but not between separators: no split named.
    assert splits_by_name(["contest.jsonl"]) == {"train": ["contest.jsonl"]}


def test_the_cards_configs_decide_when_present():
    card = {"configs": [
        {"config_name": "en", "data_files": [{"split": "train", "path": "en/train-*"}, {"split": "test", "path": ["en/test.jsonl"]}]},
        {"config_name": "fr", "default": True, "data_files": "fr/*.parquet"},
    ]}
    paths = ["en/train-1.jsonl", "en/train-0.jsonl", "en/test.jsonl", "fr/a.parquet", "fr/b.parquet"]
    assert list(card_configs(card)) == ["fr", "en"], "the default config first"
    assert select_files(paths, card, None, None, "org/ds").paths == ("fr/a.parquet", "fr/b.parquet")
    assert select_files(paths, card, "en", "train", "org/ds").paths == ("en/train-0.jsonl", "en/train-1.jsonl")
    with pytest.raises(InputError, match=r"has splits train, test: pass --split NAME"):
        select_files(paths, card, "en", None, "org/ds")
    with pytest.raises(InputError, match=r"has no config 'de' \(its configs: fr, en\)"):
        select_files(paths, card, "de", None, "org/ds")
    with pytest.raises(InputError, match=r"has no split 'dev' \(its splits: train\)"):
        select_files(paths, card, "fr", "dev", "org/ds")


def test_several_configs_and_none_default_need_config():
    card = {"configs": [{"config_name": "a", "data_files": "a/*"}, {"config_name": "b", "data_files": "b/*"}]}
    with pytest.raises(InputError, match="has configs a, b: pass --config NAME"):
        select_files(["a/x.jsonl", "b/y.jsonl"], card, None, None, "org/ds")


def test_without_card_configs_a_config_is_a_top_level_folder_as_in_refs_convert_parquet():
    paths = ["default/train/0000.parquet", "default/test/0000.parquet", "plus/train/0000.parquet"]
    assert select_files(paths, None, "plus", "train", "org/ds").paths == ("plus/train/0000.parquet",)
    with pytest.raises(InputError, match=r"no config 'zz'.*folders: default, plus"):
        select_files(paths, None, "zz", "train", "org/ds")


def test_the_card_scripts_and_hidden_files_are_no_candidates():
    assert [p for p in ["README.md", ".gitattributes", "load.py", "data/_meta.json", "data/x.jsonl", "dataset_infos.json"]
            if is_candidate(p)] == ["data/x.jsonl"]


def test_a_malformed_card_is_an_input_error():
    with pytest.raises(InputError, match="without a config_name"):
        card_configs({"configs": [{"data_files": "x"}]})
