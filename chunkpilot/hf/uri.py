"""``hf://datasets/ORG/NAME[@REVISION][/path]``: what a Hugging Face dataset input names (pure).

The form is ``huggingface_hub.HfFileSystem``'s. A revision is a branch, a tag or a commit sha; one
holding ``/`` (``refs/convert/parquet``, ``refs/pr/3``) is written with ``%2F`` for its slashes,
or literally for the hub's own ``refs/convert/…`` and ``refs/pr/N`` refs. A pinned input's URI
always carries the commit sha, so what it names can never move (``DatasetRef.at``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote

from chunkpilot.errors import InputError

PREFIX = "hf://datasets/"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_LITERAL_REFS = re.compile(r"^(refs/convert/[A-Za-z0-9._-]+|refs/pr/[0-9]+)(/|$)")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset repo (``org/name``), a revision (None: the default branch) and a path in it ("" : all)."""

    repo_id: str
    revision: str | None = None
    path: str = ""

    @property
    def pinned(self) -> bool:
        return self.revision is not None and COMMIT_SHA.match(self.revision) is not None

    def at(self, sha: str) -> "DatasetRef":
        """The same path at commit ``sha``."""
        return replace(self, revision=sha)

    def file(self, path: str) -> "DatasetRef":
        return replace(self, path=path)

    @property
    def repo_uri(self) -> str:
        """``hf://datasets/org/name[@rev]``, without the path."""
        rev = "" if self.revision is None else "@" + self.revision.replace("/", "%2F")
        return f"{PREFIX}{self.repo_id}{rev}"

    @property
    def uri(self) -> str:
        return self.repo_uri + (f"/{self.path}" if self.path else "")


def is_hf_uri(text: str) -> bool:
    return text.startswith("hf://")


def parse_dataset_uri(text: str) -> DatasetRef:
    """The ``DatasetRef`` ``text`` names; InputError saying the expected form for anything else
    (a model or space repo, a missing name, a ``..`` in the path)."""
    if not text.startswith(PREFIX):
        raise InputError(f"input {text!r}: chunkpilot reads Hugging Face datasets as hf://datasets/ORG/NAME[@REVISION]"
                         "[/path] (models and spaces are not inputs)")
    org, _, rest = text[len(PREFIX):].partition("/")
    slash, at = rest.find("/"), rest.find("@")
    if at >= 0 and (slash < 0 or at < slash):  # NAME@REVISION[/path]
        name, after = rest[:at], rest[at + 1:]
        literal = _LITERAL_REFS.match(after)
        revision, path = ((literal.group(1), after[literal.end(1):]) if literal else after.partition("/")[::2])
    else:
        name, _, path = rest.partition("/")
        revision = None
    revision = None if revision is None else unquote(revision)
    if not _NAME.match(org) or not _NAME.match(name) or ".." in org + "/" + name:
        raise InputError(f"input {text!r}: expected hf://datasets/ORG/NAME[@REVISION][/path]")
    if revision is not None and (not _REVISION.match(revision) or ".." in revision):
        raise InputError(f"input {text!r}: invalid revision {revision!r}")
    path = path.strip("/")
    if any(part in ("", ".", "..") for part in path.split("/")) and path:
        raise InputError(f"input {text!r}: invalid path {path!r} in the dataset")
    return DatasetRef(f"{org}/{name}", revision, path)
