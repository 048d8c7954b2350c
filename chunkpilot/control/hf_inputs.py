"""``hf://datasets/ORG/NAME[@REVISION][/path]`` inputs, pinned: the files of a config's split (or of
the path given) at the commit the revision names now.

The revision is resolved once, here, to a commit sha; every pin's URI carries that sha
(``hf://datasets/ORG/NAME@<sha>/<file>``) and its ``revision`` names it, so workers and collect
read exactly what was planned, whatever is pushed to the branch later. Nothing is downloaded: a
dataset-info call, a tree listing, and the formats' own small ranged reads at planning.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from chunkpilot.errors import InputError, NotFoundError
from chunkpilot.formats import described_suffixes, format_of
from chunkpilot.hf import api
from chunkpilot.hf.files import is_candidate, select_files
from chunkpilot.hf.uri import DatasetRef, parse_dataset_uri
from chunkpilot.spec import InputPin

_WILDCARDS = "*?["


@dataclass(frozen=True)
class HfInputs:
    """An hf input's pinned files, what it held besides (``skipped``), and a line for people."""

    pins: list[InputPin]
    skipped: list[str]
    note: str


def resolve_hf_input(spec: str, split: str | None = None, config: str | None = None) -> HfInputs:
    """The pinned files ``spec`` names: with no path, ``config``'s ``split`` (``chunkpilot.hf.files``);
    with a path, that file, or the data files of that folder or glob (``--split``/``--config`` then
    refused). InputError for anything unknown, a gated dataset without HF_TOKEN, or nothing readable."""
    ref = parse_dataset_uri(spec)
    if ref.path and (split or config):
        raise InputError(f"input {spec}: --split/--config choose files of a whole dataset; this input names a path "
                         f"in it already (drop the path, or the options)")
    state = api.dataset_state(ref)
    if state.gated and not api.has_token():
        raise api.AccessError(f"dataset {ref.repo_id} is gated: accept its terms on the hub and export HF_TOKEN "
                              "(passed to sky jobs as a secret)")
    pinned = ref.at(state.sha)
    if not ref.path:
        files = api.list_files(pinned)
        by_path = {f.path: f for f in files}
        chosen = select_files([f.path for f in files if is_candidate(f.path)], state.card, config, split, ref.repo_id)
        picked = [by_path[p] for p in chosen.paths]
        what = f"config {chosen.config}, split {chosen.split}"
    else:
        picked, what = _files_at(pinned, spec), f"path {ref.path}"
    data = [f for f in picked if format_of(f.path.rsplit("/", 1)[-1]) is not None]
    skipped = [pinned.file(f.path).uri for f in picked if f not in data]
    if not data:
        example = f" (e.g. {picked[0].path})" if picked else ""
        raise InputError(f"input {spec} ({what}): no file chunkpilot reads: {len(picked)} file(s){example}, none named "
                         f"{described_suffixes(glob=True)}")
    pins = [InputPin(pinned.file(f.path).uri, f.size, f.etag, revision=state.sha) for f in data]
    asked = ref.revision or "the default branch"
    note = (f"{ref.repo_uri} ({what}): {asked} pinned to commit {state.sha}, {len(pins)} file(s)"
            + (" (gated: read with HF_TOKEN)" if state.gated else ""))
    return HfInputs(pins, skipped, note)


def _files_at(pinned: DatasetRef, spec: str) -> list[api.HubFile]:
    """The file at the path, or the files of the folder or glob it names."""
    path = pinned.path
    if any(c in path for c in _WILDCARDS):
        prefix = path[: min(path.find(c) for c in _WILDCARDS if c in path)]
        try:
            listed = api.list_files(pinned.file(""), prefix.rsplit("/", 1)[0] if "/" in prefix else "")
        except NotFoundError:
            listed = []
        found = [f for f in listed if fnmatch.fnmatchcase(f.path, path)]
    else:
        try:
            single = api.path_info(pinned.file(""), path)
        except NotFoundError:
            raise InputError(f"input {spec}: the dataset has no file or folder {path!r} at commit {pinned.revision}") from None
        found = [single] if single is not None else [f for f in api.list_files(pinned.file(""), path) if is_candidate(
            f.path[len(path) + 1:])]
    if not found:
        raise InputError(f"input {spec}: matches no files at commit {pinned.revision}")
    return found
