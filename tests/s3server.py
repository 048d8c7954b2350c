"""A real S3-protocol server on loopback for tests, and a proxy that breaks it on purpose.

``MotoServer`` runs ``moto.server`` as a subprocess, so boto3 talks real HTTP to it
(signing, retries, streaming bodies and all). ``FaultProxy`` sits between boto3
and that server and injects the transient failures S3 is known for — 503
SlowDown, 500, a reset connection, a body cut off half-way, a write that lands
but answers 503 — so the store's retry paths run against botocore's real retry
logic rather than a mock of it.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

LOOPBACK = "127.0.0.1"
_RUNNING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")


# -- the moto server -----------------------------------------------------------------
class MotoServer:
    """``python -m moto.server`` on an OS-chosen loopback port; ``endpoint`` once started."""

    def __init__(self, env: dict[str, str] | None = None):
        self._env = {**os.environ, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self.endpoint = ""

    def start(self, timeout: float = 30.0) -> "MotoServer":
        fd, log_path = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        self._log_path = Path(log_path)
        # Output goes to a file, not a pipe: werkzeug logs every request and a pipe
        # nobody drains would eventually block the server.
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
            )
        port = self._wait_for_port(timeout)
        self.endpoint = f"http://{LOOPBACK}:{port}"
        return self

    def _wait_for_port(self, timeout: float) -> int:
        assert self._proc is not None and self._log_path is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _RUNNING.search(self._log_path.read_text(errors="replace"))
            if found and _accepts(LOOPBACK, int(found.group(1))):
                return int(found.group(1))
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        output = self._log_path.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"moto server did not start (is moto[s3] + flask + flask-cors installed?):\n{output}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released): an unreachable endpoint."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# -- the fault proxy -----------------------------------------------------------------
SLOWDOWN = "slowdown"  # 503 SlowDown, request not forwarded
INTERNAL = "internal"  # 500 InternalError, request not forwarded
RESET = "reset"  # connection reset, no reply, request not forwarded
CUT = "cut"  # forwarded; reply headers carry the full Content-Length, half the body follows, then a reset
LOST_WRITE = "lost_write"  # forwarded (the write lands), but the client is told 503 SlowDown
FAULTS = (SLOWDOWN, INTERNAL, RESET, CUT, LOST_WRITE)

_ERROR_BODIES = {
    SLOWDOWN: (503, "SlowDown", "Please reduce your request rate."),
    INTERNAL: (500, "InternalError", "We encountered an internal error. Please try again."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "expect", "upgrade", "te"}
_MAX_CONNECTIONS = 64


@dataclass
class _Planned:
    fault: str
    method: str | None  # None: the next request of any method


class FaultProxy:
    """A loopback HTTP proxy in front of ``upstream`` that injects faults per request.

    Faults come first from a scripted queue (``inject``), each for the next request
    of a given method; otherwise, with probability ``rate``, one of ``random_faults``
    (for ``random_methods`` only). ``requests`` counts requests by method and
    ``injected`` counts faults by kind.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        random_faults: Iterable[str] = (SLOWDOWN, INTERNAL, RESET),
        random_methods: Iterable[str] = ("GET", "PUT", "HEAD", "DELETE", "POST"),
        seed: int = 0,
    ):
        target = urlparse(upstream)
        if target.hostname not in (LOOPBACK, "localhost"):
            raise ValueError(f"FaultProxy only fronts a loopback server, not {upstream!r}")
        self.upstream = (target.hostname, target.port or 80)
        self.rate = rate
        self.random_faults = tuple(random_faults)
        self.random_methods = frozenset(random_methods)
        self._random = random.Random(seed)
        self._script: deque[_Planned] = deque()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # -- control ---------------------------------------------------------------
    def inject(self, fault: str, *, method: str | None = None, times: int = 1) -> None:
        """Give the next ``times`` requests (of ``method``, if given) this fault."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._script.extend(_Planned(fault, method) for _ in range(times))

    def pending(self) -> int:
        """Scripted faults not yet delivered."""
        with self._lock:
            return len(self._script)

    def start(self) -> "FaultProxy":
        self._server = _ProxyServer((LOOPBACK, 0), _ProxyHandler, self)
        self.endpoint = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.abort_connections()
        self._server.server_close()  # joins the handler threads
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler ---------------------------------------------------
    def _next_fault(self, method: str) -> str | None:
        with self._lock:
            self.requests[method] += 1
            fault = self._scripted(method) or self._random_fault(method)
            if fault:
                self.injected[fault] += 1
            return fault

    def _scripted(self, method: str) -> str | None:
        for planned in self._script:
            if planned.method in (None, method):
                self._script.remove(planned)
                return planned.fault
        return None

    def _random_fault(self, method: str) -> str | None:
        if self.rate and method in self.random_methods and self._random.random() < self.rate:
            return self._random.choice(self.random_faults)
        return None


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for the handler threads

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: FaultProxy):
        self.proxy = proxy
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.connections_lock:
            if len(self.open_connections) >= _MAX_CONNECTIONS:
                return False  # bounded: refuse rather than grow without limit
            self.open_connections.add(request)
            return True

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def abort_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self.connections_lock:
            for conn in list(self.open_connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Broken connections are this server's purpose; don't print their tracebacks.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so botocore reuses connections as with S3
    timeout = 30
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _handle(self) -> None:
        body = self._read_body()
        fault = self.server.proxy._next_fault(self.command)
        if fault == RESET:
            return self._reset()
        if fault in (SLOWDOWN, INTERNAL):
            return self._send_error(fault)
        try:
            status, reason, headers, payload = self._forward(body)
        except OSError:
            return self._send_plain(502, b"fault proxy: upstream unreachable")
        if fault == LOST_WRITE:
            return self._send_error(SLOWDOWN)
        if fault == CUT:
            return self._send_cut(status, reason, headers, payload)
        self._send(status, reason, headers, payload)

    # -- request side ------------------------------------------------------------
    def _read_body(self) -> bytes:
        """The request body exactly as sent, chunk framing included when chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_raw()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked_raw(self) -> bytes:
        raw = bytearray()
        while True:
            size_line = self.rfile.readline(65537)
            raw += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers (aws-chunked checksums), then the blank line
                    line = self.rfile.readline(65537)
                    raw += line
                    if line in (b"\r\n", b"\n", b""):
                        return bytes(raw)
            raw += self.rfile.read(size + 2)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=30)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = b"" if self.command == "HEAD" else response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            conn.close()

    # -- response side -----------------------------------------------------------
    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        self._start_response(status, reason, headers, len(payload))
        self.wfile.write(payload)

    def _start_response(self, status: int, reason: str, headers: list[tuple[str, str]], length: int) -> None:
        self.send_response(status, reason)
        bodiless = self.command == "HEAD" or status in (204, 304)
        for name, value in headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower in ("transfer-encoding", "server", "date"):
                continue
            if lower == "content-length" and not bodiless:
                continue  # re-stated below from the bytes we actually hold
            self.send_header(name, value)
        if not bodiless:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_cut(self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        self._start_response(status, reason, headers, len(payload))
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        self._reset()

    def _send_error(self, fault: str) -> None:
        status, code, message = _ERROR_BODIES[fault]
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>FAULTPROXY</RequestId><HostId>fault-proxy</HostId></Error>"
        ).encode()
        self._send_plain(status, b"" if self.command == "HEAD" else xml, "application/xml")

    def _send_plain(self, status: int, payload: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER 0 makes close() send RST instead of FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the socket was reset on purpose


__all__ = [
    "MotoServer",
    "FaultProxy",
    "closed_loopback_port",
    "FAULTS",
    "SLOWDOWN",
    "INTERNAL",
    "RESET",
    "CUT",
    "LOST_WRITE",
]
