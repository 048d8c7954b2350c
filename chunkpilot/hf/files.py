"""Which files of a dataset repo hold a config's split (pure: a listing and the card in, paths out).

Like the ``datasets`` library, in this order:

1. The dataset card's ``configs`` (README.md YAML): each ``{config_name, data_files, default}``,
   ``data_files`` a pattern, a list of them, or ``[{split, path}]`` with ``path`` a pattern or a
   list. Patterns are globs over repo paths (``*`` and ``**`` also cross ``/``).
2. Without card configs, the split's name in the paths: a folder named for it (``train/…``,
   ``data/test-x/…``), else a file name starting with it or holding it between separators
   (``data/train-00000-of-00004.parquet``, ``my_validation.jsonl``). Synonyms count as
   ``datasets`` counts them (``dev``/``val``/``valid`` for validation, ``eval``/``testing`` for test…).
   Files that name no split are all the ``train`` split. ``--config`` then picks a top-level
   folder (the layout of the hub's ``refs/convert/parquet`` branch); ``default`` picks them all.

Candidates are the repo's files less hidden ones, the card and the hub's metadata
(``is_candidate``); which of the chosen ones chunkpilot can read is the caller's business (an error
naming them when none is). Paths come back sorted, so shards keep their order.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from chunkpilot.errors import InputError

SPLIT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = r"[-._ 0-9]"
DEFAULT_CONFIG = "default"


@dataclass(frozen=True)
class SplitFiles:
    """The files chosen, and what was chosen among (for the dry run and error messages)."""

    config: str
    split: str
    paths: tuple[str, ...]
    splits: tuple[str, ...]  # every split the config has


_METADATA = ("README.md", "dataset_infos.json", "dataset_info.json", "dataset_dict.json", "state.json")


def is_candidate(path: str) -> bool:
    """A file that may hold data: not hidden (``.x``, ``_x`` in any folder), not the card, a loading
    script or the hub's metadata."""
    parts = path.split("/")
    return not (any(p.startswith((".", "_")) for p in parts) or parts[-1] in _METADATA or parts[-1].endswith(".py"))


def _glob(pattern: str, path: str) -> bool:
    pattern = pattern.lstrip("./").lstrip("/")
    if fnmatch.fnmatchcase(path, pattern):
        return True
    # "**/x" also matches "x" at the top (fnmatch's "*" would need a "/" before it).
    return pattern.startswith("**/") and fnmatch.fnmatchcase(path, pattern[3:])


def card_configs(card: Mapping[str, Any] | None) -> dict[str, dict[str, list[str]]]:
    """``{config: {split: [patterns]}}`` from a card's ``configs`` (empty without one), default first.

    InputError for a ``configs`` entry that is not the documented shape."""
    entries = (card or {}).get("configs") or []
    if not isinstance(entries, list):
        raise InputError("the dataset card's 'configs' is not a list: cannot tell its splits")
    out: dict[str, dict[str, list[str]]] = {}
    ordered = sorted(entries, key=lambda e: not (isinstance(e, dict) and e.get("default")))
    for entry in ordered:
        if not isinstance(entry, dict) or "config_name" not in entry:
            raise InputError(f"the dataset card has a config without a config_name: {entry!r}")
        files = entry.get("data_files")
        splits: dict[str, list[str]] = {}
        if files is None:
            continue  # a config without data files (a loading script's): nothing chunkpilot can read
        if isinstance(files, str):
            files = [files]
        for item in files:
            if isinstance(item, str):
                splits.setdefault("train", []).append(item)
            elif isinstance(item, dict) and "path" in item:
                paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
                splits.setdefault(str(item.get("split", "train")), []).extend(str(p) for p in paths)
            else:
                raise InputError(f"config {entry['config_name']!r} of the dataset card has a data_files entry "
                                 f"chunkpilot cannot read: {item!r}")
        out[str(entry["config_name"])] = splits
    return out


def _keyword_in_dir(keyword: str, path: str) -> bool:
    dirs = path.split("/")[:-1]
    pattern = re.compile(rf"^(.*{_SEP})?{re.escape(keyword)}({_SEP}.*)?$")
    return any(pattern.match(d) for d in dirs)


def _keyword_in_name(keyword: str, path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return re.match(rf"^(.*{_SEP})?{re.escape(keyword)}{_SEP}", name) is not None


def splits_by_name(paths: Sequence[str], extra: Iterable[str] = ()) -> dict[str, list[str]]:
    """``{split: paths}`` by the split names in the paths (folders first, then file names); every
    path under ``train`` when none names a split. ``extra``: split names to look for besides the
    usual ones (the one the user asked for)."""
    keywords = dict(SPLIT_SYNONYMS)
    for name in extra:
        keywords.setdefault(name, (name,))
    for rule in (_keyword_in_dir, _keyword_in_name):
        found: dict[str, list[str]] = {}
        for split, words in keywords.items():
            chosen = [p for p in paths if any(rule(w, p) for w in words)]
            if chosen:
                found[split] = chosen
        if found:
            return found
    return {"train": list(paths)} if paths else {}


def select_files(paths: Sequence[str], card: Mapping[str, Any] | None, config: str | None, split: str | None,
                 repo: str) -> SplitFiles:
    """The files of ``config``'s ``split`` among ``paths`` (the repo's candidates, ``is_candidate``).

    InputError naming what there is for an unknown config or split, or when several exist and
    none was named (a config marked ``default`` in the card is taken when none is named)."""
    configs = card_configs(card)
    if configs:
        names = list(configs)
        if config is None:
            marked = [e.get("config_name") for e in (card or {}).get("configs") or [] if isinstance(e, dict) and e.get("default")]
            if len(names) > 1 and not marked and DEFAULT_CONFIG not in configs:
                raise InputError(f"dataset {repo} has configs {', '.join(names)}: pass --config NAME")
            config = marked[0] if marked else DEFAULT_CONFIG if DEFAULT_CONFIG in configs else names[0]
        if config not in configs:
            raise InputError(f"dataset {repo} has no config {config!r} (its configs: {', '.join(names)})")
        by_split = {s: sorted({p for p in paths if any(_glob(pat, p) for pat in pats)})
                    for s, pats in configs[config].items()}
    else:
        chosen_paths = list(paths)
        if config not in (None, DEFAULT_CONFIG):
            chosen_paths = [p for p in paths if p.startswith(config + "/")]
            if not chosen_paths:
                tops = sorted({p.split("/", 1)[0] for p in paths if "/" in p})
                raise InputError(f"dataset {repo} has no config {config!r}: its card names no configs and no top-level "
                                 f"folder is named so" + (f" (folders: {', '.join(tops)})" if tops else ""))
            chosen_paths = [p[len(config) + 1:] for p in chosen_paths]
        by_split = splits_by_name(chosen_paths, [split] if split else [])
        if config not in (None, DEFAULT_CONFIG):
            by_split = {s: [f"{config}/{p}" for p in ps] for s, ps in by_split.items()}
        config = config or DEFAULT_CONFIG
        by_split = {s: sorted(ps) for s, ps in by_split.items()}
    splits = tuple(s for s, ps in by_split.items() if ps) or tuple(by_split)
    if split is None:
        if len(splits) > 1:
            raise InputError(f"dataset {repo} (config {config}) has splits {', '.join(splits)}: pass --split NAME")
        split = splits[0] if splits else "train"
    if split not in by_split:
        raise InputError(f"dataset {repo} (config {config}) has no split {split!r}"
                         + (f" (its splits: {', '.join(splits)})" if splits else ""))
    return SplitFiles(config, split, tuple(by_split[split]), splits)
