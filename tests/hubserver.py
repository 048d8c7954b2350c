"""A model hub on loopback that answers the model-info endpoint the way the Hugging Face Hub does,
so the real ``huggingface_hub`` client (pointed at it with ``HF_ENDPOINT``) resolves revisions.

``GET /api/models/<org>/<name>[/revision/<rev>]`` answers ``{"id", "sha", ...}`` for a known
model and revision; an unknown model or revision gets a 404 with the hub's ``X-Error-Code``
(``RepoNotFound`` / ``RevisionNotFound``), which the client turns into its own exceptions. Every
request's path and ``Authorization`` header are recorded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakeHub:
    """``repos[repo_id][revision] = sha``; ``endpoint`` is the URL for ``HF_ENDPOINT``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                hub.requests.append((self.path, self.headers.get("Authorization")))
                path = unquote(urlparse(self.path).path)
                if not path.startswith("/api/models/"):
                    return self._answer(404, {"error": "not found"}, "EntryNotFound")
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

            def _answer(self, status: int, body: dict, error_code: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                    self.send_header("X-Error-Message", body.get("error", ""))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
