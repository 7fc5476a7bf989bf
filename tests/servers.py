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
from typing import Any

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
    "Recorder",
    "RecorderServer",
    "demo_api",
    "demo_api_factory",
    "demo_api_session",
    "demo_subprocess",
    "recorder",
    "recorder_session",
    "start_demo_process",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Settings of the session-wide demo server.
DEMO_SESSION_CONFIG = DemoConfig(access_ttl=60, refresh_ttl=600, log_level="warning")


# -- the demo API in a thread --------------------------------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    started: list[DemoProcess] = []

    def start(*args: str, timeout: float = 20.0) -> DemoProcess:
        proc = start_demo_process(*args, timeout=timeout)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# -- the recorder --------------------------------------------------------------------


def _contains(record: dict[str, Any], text: str) -> bool:
    return (
        text in record["path"]
        or text in record["query"]
        or any(text in k or text in v for k, v in record["raw_headers"])
        or text.encode() in record["body"]
    )


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
        body = await request.body()
        raw_headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]
        ]
        headers: dict[str, str] = {}
        for k, v in raw_headers:
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        record = {
            "method": request.method,
            "path": request.url.path,
            "query": request.scope.get("query_string", b"").decode("latin-1"),
            "headers": headers,
            "raw_headers": raw_headers,
            "body": body,
        }
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

    def start(self, timeout: float = 10.0) -> RecorderServer:
        super().start(timeout)
        return self

    def __enter__(self) -> RecorderServer:
        return self.start()


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
