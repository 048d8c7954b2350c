"""A model and dataset hub on loopback that answers the endpoints the real ``huggingface_hub`` client
calls (pointed at it with ``HF_ENDPOINT``), the way the Hugging Face Hub answers them.

Models: ``GET /api/models/<org>/<name>[/revision/<rev>]`` answers ``{"id", "sha", ...}``.

Datasets (``FakeHub.push`` makes a commit and moves a branch to it):

* ``GET /api/datasets/<repo>[/revision/<rev>]``: ``{"id", "sha", "gated", "cardData", "siblings"}``;
* ``GET /api/datasets/<repo>/tree/<rev>[/<path>]?recursive=…``: files (and folders unless recursive);
* ``POST /api/datasets/<repo>/paths-info/<rev>`` (form ``paths``): what each path is;
* ``GET /datasets/<repo>/resolve/<rev>/<path>``: the file, honouring ``Range`` (206) — every read
  is recorded in ``reads`` as ``(repo, rev, path, range header or None, bytes sent)``. A gated
  dataset's files need ``Authorization: Bearer <token>``: 401 ``GatedRepo`` without one, 403 with
  another (its listing and info are public, as on the hub).

Unknown repos, revisions and paths get a 404 with the hub's ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``), which the client turns into its own exceptions. Every
request's path and ``Authorization`` header are recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class FakeDataset:
    """A dataset repo: commits (sha -> {path: bytes}), refs (branch or tag -> sha), its card data."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    card: dict | None = None
    gated: bool = False
    token: str | None = None  # the token that may read a gated dataset's files

    def sha(self, revision: str) -> str | None:
        return revision if revision in self.commits else self.refs.get(revision)


class FakeHub:
    """``repos[repo_id][revision] = sha`` for models, ``datasets[repo_id]`` for datasets;
    ``endpoint`` is the URL for ``HF_ENDPOINT``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, str]] = {}
        self.datasets: dict[str, FakeDataset] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.reads: list[tuple[str, str, str, str | None, int]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                hub.requests.append((self.path, self.headers.get("Authorization")))
                raw = urlparse(self.path)
                if raw.path.startswith("/api/models/"):
                    return self._model(unquote(raw.path))
                if raw.path.startswith("/api/datasets/"):
                    return self._dataset_api(raw.path[len("/api/datasets/"):], parse_qs(raw.query))
                if raw.path.startswith("/datasets/"):
                    return self._resolve(raw.path[len("/datasets/"):])
                return self._answer(404, {"error": "not found"}, "EntryNotFound")

            def do_POST(self) -> None:  # noqa: N802
                hub.requests.append((self.path, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                segments = urlparse(self.path).path[len("/api/datasets/"):].split("/")
                if not self.path.startswith("/api/datasets/") or len(segments) < 4 or segments[2] != "paths-info":
                    return self._answer(404, {"error": "not found"}, "EntryNotFound")
                found = self._commit("/".join(segments[:2]), unquote(segments[3]))
                if found is None:
                    return
                files = found
                out = []
                for path in form.get("paths", []):
                    path = path.strip("/")
                    if path in files:
                        out.append(_file_entry(path, files[path]))
                    elif any(p.startswith(path + "/") for p in files):
                        out.append({"type": "directory", "oid": _oid(path.encode()), "path": path})
                self._answer(200, out)

            # -- models ------------------------------------------------------------------
            def _model(self, path: str) -> None:
                rest = path[len("/api/models/"):]
                repo, _, revision = rest.partition("/revision/")
                revisions = hub.repos.get(repo)
                if revisions is None:
                    return self._answer(404, {"error": "Repository not found"}, "RepoNotFound")
                sha = revisions.get(revision or "main")
                if sha is None:
                    return self._answer(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
                self._answer(200, {"id": repo, "modelId": repo, "sha": sha, "private": False, "tags": [],
                                   "siblings": [{"rfilename": "config.json"}]})

            # -- datasets ----------------------------------------------------------------
            def _commit(self, repo: str, revision: str) -> dict[str, bytes] | None:
                dataset = hub.datasets.get(repo)
                if dataset is None:
                    self._answer(404, {"error": "Repository not found"}, "RepoNotFound")
                    return None
                sha = dataset.sha(revision)
                if sha is None:
                    self._answer(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
                    return None
                return dataset.commits[sha]

            def _dataset_api(self, rest: str, query: dict) -> None:
                segments = rest.split("/")
                repo = "/".join(segments[:2])
                if len(segments) == 2 or (len(segments) == 4 and segments[2] == "revision"):
                    revision = unquote(segments[3]) if len(segments) == 4 else "main"
                    files = self._commit(repo, revision)
                    if files is None:
                        return
                    dataset = hub.datasets[repo]
                    return self._answer(200, {"id": repo, "sha": dataset.sha(revision), "private": False,
                                              "gated": "manual" if dataset.gated else False, "tags": [],
                                              "cardData": dataset.card, "siblings": [{"rfilename": p} for p in sorted(files)]})
                if len(segments) >= 4 and segments[2] == "tree":
                    files = self._commit(repo, unquote(segments[3]))
                    if files is None:
                        return
                    under = unquote("/".join(segments[4:])).strip("/")
                    recursive = query.get("recursive", ["false"])[0].lower() == "true"
                    return self._tree(files, under, recursive)
                self._answer(404, {"error": "not found"}, "EntryNotFound")

            def _tree(self, files: dict[str, bytes], under: str, recursive: bool) -> None:
                prefix = under + "/" if under else ""
                inside = {p: d for p, d in files.items() if p.startswith(prefix)}
                if under and not inside:
                    return self._answer(404, {"error": f"{under} does not exist"}, "EntryNotFound")
                out, folders = [], set()
                for path in sorted(inside):
                    rest = path[len(prefix):]
                    if "/" in rest and not recursive:
                        folders.add(prefix + rest.split("/", 1)[0])
                        continue
                    if recursive:
                        parts = rest.split("/")[:-1]
                        folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
                    out.append(_file_entry(path, inside[path]))
                out += [{"type": "directory", "oid": _oid(f.encode()), "path": f} for f in sorted(folders)]
                self._answer(200, out)

            def _resolve(self, rest: str) -> None:
                segments = rest.split("/")
                if len(segments) < 5 or segments[2] != "resolve":
                    return self._answer(404, {"error": "not found"}, "EntryNotFound")
                repo, revision, path = "/".join(segments[:2]), unquote(segments[3]), unquote("/".join(segments[4:]))
                dataset = hub.datasets.get(repo)
                if dataset is not None and dataset.gated:
                    auth = self.headers.get("Authorization")
                    if auth != f"Bearer {dataset.token}":
                        status = 401 if auth is None else 403
                        return self._answer(status, {"error": "Access to this dataset is restricted"}, "GatedRepo")
                files = self._commit(repo, revision)
                if files is None:
                    return
                if path not in files:
                    return self._answer(404, {"error": "Entry not found"}, "EntryNotFound")
                data = files[path]
                wanted = self.headers.get("Range")
                status, body, extra = 200, data, {}
                if wanted:
                    first, _, last = wanted.removeprefix("bytes=").partition("-")
                    start, end = int(first), min(len(data) - 1, int(last)) if last else len(data) - 1
                    if start >= len(data):
                        hub.reads.append((repo, revision, path, wanted, 0))
                        return self._raw(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    status, body = 206, data[start : end + 1]
                    extra = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
                hub.reads.append((repo, revision, path, wanted, len(body)))
                self._raw(status, body, {"ETag": f'"{_oid(data)}"', "Accept-Ranges": "bytes", **extra})

            def _raw(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _answer(self, status: int, body, error_code: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                    self.send_header("X-Error-Message", body.get("error", "") if isinstance(body, dict) else "")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def push(self, repo: str, files: dict[str, bytes], branch: str = "main", card: dict | None = None,
             gated: bool = False, token: str | None = None, keep: bool = False) -> str:
        """Commit ``files`` (on top of the branch's files when ``keep``) to dataset ``repo``, move
        ``branch`` to the commit and return its sha (creating the dataset if needed)."""
        dataset = self.datasets.setdefault(repo, FakeDataset())
        if card is not None:
            dataset.card = card
        dataset.gated, dataset.token = gated or dataset.gated, token or dataset.token
        base = dict(dataset.commits.get(dataset.refs.get(branch, ""), {})) if keep else {}
        base.update(files)
        digest = hashlib.sha1(repr((repo, sorted(base.items()), len(dataset.commits))).encode()).hexdigest()
        dataset.commits[digest] = base
        dataset.refs[branch] = digest
        return digest

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _oid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _file_entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "oid": _oid(data), "size": len(data), "path": path}
    if path.endswith(".parquet"):  # as the hub stores big files: in LFS, named by their sha256
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry
