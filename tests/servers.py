"""Local HTTP servers for the tests, and pytest fixtures that start them.

Import the fixtures into a conftest (``from tests.servers import *``) or a test
module. Everything listens on 127.0.0.1 and a free port.

Fixtures
--------
``demo_api_session`` (session)
    One :class:`DemoServer` for the whole run (access tokens 60 s, refresh 600 s).
``demo_api`` (function)
    The same server, with its statistics and clock reset before the test.
``demo_api_factory`` (function)
    ``demo_api_factory(**config_overrides) -> DemoServer``: a fresh, started demo
    server (e.g. ``access_ttl=1, expired_status=403``), stopped after the test.
``demo_subprocess`` (function)
    ``demo_subprocess(*cli_args, timeout=20.0) -> DemoProcess``: runs
    ``python -m session_magics.demo --port 0 *cli_args`` and reads its URL;
    the process is terminated after the test.
``recorder_session`` (session) / ``recorder`` (function)
    A :class:`RecorderServer`: a second origin that records every request it gets and
    answers ``{"ok": true}`` (``/redirect?to=&status=`` redirects). ``recorder``
    is the session one, emptied before the test.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from session_magics.demo import DemoConfig, DemoServer, ThreadedServer

__all__ = [
    "DEMO_SESSION_CONFIG",
    "DemoProcess",
    "DemoServer",
    "ExpireAfter",
    "RawServer",
    "Recorder",
    "RecordingProxy",
    "RecorderServer",
    "demo_api",
    "demo_api_factory",
    "demo_api_session",
    "demo_expiring",
    "demo_subprocess",
    "endless_body",
    "other_origin",
    "project_logging_in_at",
    "record_of",
    "raw_server",
    "recorder",
    "recorder_session",
    "recording_proxy",
    "silent",
    "start_demo_process",
    "stopped_afterwards",
    "trickle",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Settings of the session-wide demo server.
DEMO_SESSION_CONFIG = DemoConfig(access_ttl=60, refresh_ttl=600, log_level="warning")


# -- the demo API in a thread --------------------------------------------------------


def python_json(code: str, *args: str, cwd: Path, env: dict[str, str]) -> Any:
    """Run ``python -c code args`` in a fresh process (``cwd``, ``env``) and return the JSON
    of the last line it printed; a failing process fails the test with its stderr."""
    import json

    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def other_origin(url: str) -> str:
    """The same local server under its other name: ``http://localhost:PORT`` for
    ``http://127.0.0.1:PORT``, another origin by the rules of the web."""
    return f"http://localhost:{url.rsplit(':', 1)[1]}"


def project_logging_in_at(folder: Path, origin: str) -> Path:
    """``folder``, made a project whose pyproject.toml puts the token endpoint on
    ``origin`` (as a cloned repository might)."""
    folder.mkdir()
    (folder / "pyproject.toml").write_text(f'[tool.session_magics]\nlogin_path = "{origin}/auth/token"\n')
    return folder


S = TypeVar("S", bound="Stoppable")
P = ParamSpec("P")


class Stoppable(Protocol):
    def stop(self) -> Any: ...


@contextlib.contextmanager
def stopped_afterwards(start: Callable[P, S]) -> Iterator[Callable[P, S]]:
    """``start``, keeping what it starts; on leaving, all of it is stopped (for fixtures
    that hand a test a way to start servers)."""
    started: list[S] = []

    def keep(*args: P.args, **kwargs: P.kwargs) -> S:
        server = start(*args, **kwargs)
        started.append(server)
        return server

    try:
        yield keep
    finally:
        for server in started:
            server.stop()


class ExpireAfter:
    """ASGI middleware: after the n-th answer on ``path``, move the demo's clock on."""

    def __init__(self, app: Any, state: Any, path: str, n: int, seconds: float) -> None:
        self.app, self.state, self.path, self.n, self.seconds = app, state, path, n, seconds
        self.count = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http" and scope["path"] == self.path:
            self.count += 1
            if self.count == self.n:
                self.state.advance_clock(self.seconds)


def demo_expiring(path: str, n: int, seconds: float, **config: Any) -> DemoServer:
    """A demo API, not started yet (access tokens 300 s, refresh tokens 3600 s unless
    ``config`` says otherwise), whose clock moves on by ``seconds`` after its n-th answer
    on ``path``: its tokens expire in the middle of a run of requests."""
    server = DemoServer(**({"access_ttl": 300, "refresh_ttl": 3600} | config))
    server.app = ExpireAfter(server.app, server.state, path, n, seconds)
    return server


@pytest.fixture(scope="session")
def demo_api_session() -> Iterator[DemoServer]:
    """The session-wide demo API (statistics are *not* reset between tests)."""
    with DemoServer(DEMO_SESSION_CONFIG) as server:
        yield server


@pytest.fixture
def demo_api(demo_api_session: DemoServer) -> DemoServer:
    """The session-wide demo API, with statistics and clock reset for this test."""
    demo_api_session.reset()
    return demo_api_session


@pytest.fixture
def demo_api_factory() -> Iterator[Callable[..., DemoServer]]:
    """``make(config=None, **overrides) -> DemoServer``, started; all stopped afterwards."""
    servers: list[DemoServer] = []

    def make(config: DemoConfig | None = None, **overrides: Any) -> DemoServer:
        overrides.setdefault("log_level", "warning")
        server = DemoServer(config, **overrides)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:  # shut down in parallel, then wait
        server.stop(wait=False)
    for server in servers:
        server.stop()


# -- the demo API as a subprocess ----------------------------------------------------


@dataclass
class DemoProcess:
    """A running ``python -m session_magics.demo``; its output is collected."""

    url: str
    process: subprocess.Popen[str]
    banner: list[str]
    _stdout: list[str] = field(default_factory=list)
    _stderr: list[str] = field(default_factory=list)

    def output(self) -> str:
        """Everything printed so far on stdout and stderr (banner included)."""
        return "".join(self._stdout) + "".join(self._stderr)

    def stop(self, timeout: float = 5.0) -> int:
        """Terminate (SIGTERM, then SIGKILL) and return the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode


def _pump(stream: Any, sink: list[str], lines: queue.Queue[str | None] | None) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        if lines is not None:
            lines.put(line)
    if lines is not None:
        lines.put(None)


def start_demo_process(*args: str, timeout: float = 20.0) -> DemoProcess:
    """Start the demo CLI on a free port and wait for its URL line.

    ``args`` are extra command-line options; ``--port 0`` comes first, so a
    ``--port`` in ``args`` wins. The banner is read until the server prints
    the line ``stop with Ctrl+C`` (with ``--quiet``: the first line only).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "session_magics.demo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    stdout: list[str] = []
    stderr: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    for stream, sink, q in ((process.stdout, stdout, lines), (process.stderr, stderr, None)):
        threading.Thread(target=_pump, args=(stream, sink, q), daemon=True).start()
    prefix = "session-magics demo API: "
    banner: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"the demo exited with {process.wait()}: {''.join(stderr)[-2000:]}")
            banner.append(line.rstrip("\n"))
            if "stop with Ctrl+C" in line or "--quiet" in args:  # --quiet: one line
                break
    except queue.Empty:
        process.kill()
        raise RuntimeError(f"the demo printed no URL within {timeout} s") from None
    except BaseException:
        process.kill()
        raise
    if not banner[0].startswith(prefix):
        process.kill()
        raise RuntimeError(f"unexpected first line: {banner[0]!r}")
    return DemoProcess(banner[0][len(prefix) :], process, banner, stdout, stderr)


@pytest.fixture
def demo_subprocess() -> Iterator[Callable[..., DemoProcess]]:
    """``start(*cli_args, timeout=20.0) -> DemoProcess``; terminated after the test."""
    with stopped_afterwards(start_demo_process) as start:
        yield start


# -- the recorder --------------------------------------------------------------------


def _contains(record: dict[str, Any], text: str) -> bool:
    return (
        text in record["path"]
        or text in record["query"]
        or any(text in k or text in v for k, v in record["raw_headers"])
        or text.encode() in record["body"]
    )


async def record_of(request: Request) -> dict[str, Any]:
    """What a recording server keeps of ``request``: ``method``, ``path``, ``query`` (the
    raw query string), ``raw_headers`` (as received, in order, names in lower case) and
    ``body`` (bytes)."""
    return {
        "method": request.method,
        "path": request.url.path,
        "query": request.scope.get("query_string", b"").decode("latin-1"),
        "raw_headers": [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]
        ],
        "body": await request.body(),
    }


class RecorderServer(ThreadedServer):
    """A server on its own origin that records every request it receives.

    Every path answers 200 ``{"ok": true}``, except ``/redirect?to=URL&status=302``
    which redirects (and is recorded too). :meth:`requests` returns dicts::

        {"method": "GET", "path": "/x", "query": "a=1",      # raw query string
         "headers": {"user-agent": "..."},                    # lower-case names
         "raw_headers": [("user-agent", "...")],              # as received, in order
         "body": b""}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                )
            ]
        )
        super().__init__(app, name="recorder")

    async def _handle(self, request: Request) -> Response:
        record = await record_of(request)
        headers: dict[str, str] = {}
        for k, v in record["raw_headers"]:
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        record["headers"] = headers
        with self._lock:
            self._requests.append(record)
        if request.url.path == "/redirect":
            status = int(request.query_params.get("status", "302"))
            return RedirectResponse(request.query_params.get("to", "/"), status_code=status)
        return JSONResponse({"ok": True})

    def requests(self) -> list[dict[str, Any]]:
        """The requests received so far, oldest first (a copy)."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def saw(self, text: str) -> bool:
        """Whether any recorded request carried ``text`` anywhere (path, query,
        a header name or value, the body): e.g. ``assert not rec.saw(token)``."""
        return any(_contains(r, text) for r in self.requests())

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` requests arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests()
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.005)


#: Short alias.
Recorder = RecorderServer


@pytest.fixture(scope="session")
def recorder_session() -> Iterator[RecorderServer]:
    with RecorderServer() as rec:
        yield rec


@pytest.fixture
def recorder(recorder_session: RecorderServer) -> RecorderServer:
    """The session recorder, emptied for this test."""
    recorder_session.clear()
    return recorder_session


# -- raw servers that misbehave on the wire -------------------------------------------


class RawServer:
    """A plain TCP server on 127.0.0.1 whose ``handle(conn, server)`` writes whatever bytes
    it likes: the answers that a framework would never send (a trickle, an endless body).

    ``sent`` counts the bytes the handler managed to send, ``finished`` is set when a
    handler returns (the client hung up or the handler ran out), ``client_left`` tells
    whether it ended because the client closed the connection. Each test's handler
    gets its own server; :meth:`stop` closes everything.
    """

    def __init__(self, handle: Callable[[socket.socket, RawServer], None]) -> None:
        self._handle = handle
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = 0
        self.requests: list[bytes] = []
        self.client_left = threading.Event()
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accept = threading.Thread(target=self._serve, name="raw server", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.requests.append(read_request_head(conn))
            self._handle(conn, self)
        except OSError:
            self.client_left.set()
        finally:
            conn.close()
            self.finished.set()

    def send(self, conn: socket.socket, data: bytes) -> None:
        """Send ``data`` (counted); an OSError means the client went away."""
        if self._stop.is_set():
            raise OSError("server stopping")
        conn.sendall(data)
        self.sent += len(data)

    def wait(self, seconds: float) -> None:
        """Pause the handler (its own pace, not the test's synchronisation); ends early on stop."""
        if self._stop.wait(seconds):
            raise OSError("server stopping")

    def start(self) -> RawServer:
        self._accept.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with _suppress_os_error():
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                with _suppress_os_error():
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(10)
        self._accept.join(10)

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, OSError)


def read_request_head(conn: socket.socket) -> bytes:
    """The request line and headers (the body, if any, is left unread)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def trickle(
    part: str, *, every: float = 0.2, count: int = 150, framing: str = "length"
) -> Callable[..., None]:
    """A handler that sends its ``part`` ("headers" or "body") one byte every ``every`` s,
    ``count`` bytes in all (30 s at the defaults): per-read timeouts never expire."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        if part == "headers":
            server.send(conn, b"HTTP/1.1 200 OK\r\n")
            for _ in range(count):
                server.wait(every)
                server.send(conn, b"X")
            server.send(conn, b": y\r\nContent-Length: 0\r\n\r\n")
            return
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        if framing == "length":
            head += f"Content-Length: {count}\r\n\r\n".encode()
        elif framing == "chunked":
            head += b"Transfer-Encoding: chunked\r\n\r\n"
        else:
            head += b"Connection: close\r\n\r\n"
        server.send(conn, head)
        for _ in range(count):
            server.wait(every)
            server.send(conn, b"1\r\nx\r\n" if framing == "chunked" else b"x")
        if framing == "chunked":
            server.send(conn, b"0\r\n\r\n")

    return handle


def silent(*, give_up: float = 60.0) -> Callable[..., None]:
    """A handler that answers nothing: it reads until the client hangs up (then sets
    ``client_left``, with ``sent`` still 0). A client still connected after ``give_up`` s
    gets a 200 answer (``sent`` > 0, ``client_left`` unset): a client that ignored its
    timeout fails its test instead of hanging it."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        conn.settimeout(give_up)
        try:
            while conn.recv(65536):
                pass  # the rest of the request, then end of file
        except TimeoutError:
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            return
        server.client_left.set()

    return handle


def endless_body(*, limit: int = 400 * 1024 * 1024, announce: int | None = None) -> Callable[..., None]:
    """A handler that sends a body as fast as it can — ``limit`` bytes (far beyond any sane
    answer), with no length, or announcing ``announce`` bytes in Content-Length."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        length = f"Content-Length: {announce}\r\n" if announce is not None else "Connection: close\r\n"
        server.send(conn, f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{length}\r\n".encode())
        block = b"x" * 65536
        while server.sent < limit:
            server.send(conn, block)

    return handle


class RecordingProxy(RawServer):
    """An HTTP proxy that forwards nothing: it records each request it gets (the absolute
    URL in the request line, the headers, the body) and answers 200 ``{"proxied": true}``."""

    def __init__(self) -> None:
        super().__init__(self._answer)

    @staticmethod
    def _answer(conn: socket.socket, server: RawServer) -> None:
        head, _, body = server.requests[-1].partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        server.requests[-1] = head + b"\r\n\r\n" + body
        payload = b'{"proxied": true}'
        server.send(
            conn,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload,
        )

    def saw(self, text: str) -> bool:
        return any(text.encode() in r for r in self.requests)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """``raw_server(handler) -> RawServer``, started; all stopped after the test."""
    with stopped_afterwards(lambda handle: RawServer(handle).start()) as make:
        yield make


@pytest.fixture
def recording_proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy()
    with proxy:
        yield proxy
