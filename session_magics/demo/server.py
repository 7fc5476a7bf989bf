"""Running the demo API (or any ASGI app) with uvicorn on a pre-bound socket."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette

from .app import DemoState, create_app
from .config import DemoConfig

__all__ = ["DemoServer", "ThreadedServer", "bind_socket", "socket_url", "uvicorn_config"]

#: Idle keep-alive connections are closed after this many seconds (uvicorn's
#: default of 5 s makes a notebook reconnect after every pause).
KEEP_ALIVE_SECONDS = 30


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port).

    Connections made as soon as this returns are queued by the kernel until the
    server starts accepting them, so the URL can be announced right away.
    """
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would allow stealing a busy port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # asyncio sets TCP_NODELAY on every accepted connection as well; setting it
        # on the listener too costs nothing (Linux copies it to accepted sockets).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://host:port`` for a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def uvicorn_config(
    app: Any, *, log_level: str = "warning", access_log: bool = False, log_config: Any = None
) -> uvicorn.Config:
    """The uvicorn settings the demo uses (HTTP/1.1 keep-alive, no websockets)."""
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        log_config=log_config,
        lifespan="off",
        ws="none",
        loop="asyncio",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=2,
    )


class ThreadedServer:
    """Serve an ASGI app with uvicorn in a daemon thread on ``127.0.0.1:<free port>``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        name: str = "uvicorn",
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.app = app
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.host = host
        self.port = port
        self.log_level = log_level
        self.name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); only once started."""
        if self._url is None:
            raise RuntimeError(f"{self.name} is not running; call start() first")
        return self._url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout: float = 10.0) -> Self:
        if self.running:
            return self
        sock = bind_socket(self.host, self.port)
        url = socket_url(sock)
        config = uvicorn_config(self.app, log_level=self.log_level)
        if self.ssl_certfile:  # HTTPS, for tests of TLS behaviour
            config.ssl_certfile, config.ssl_keyfile = self.ssl_certfile, self.ssl_keyfile
            url = "https" + url[len("http") :]
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"{self.name} {url}", daemon=True
        )
        self._server, self._thread, self._error = server, thread, None
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"{self.name} did not start") from self._error
            time.sleep(0.002)
        self._url = url
        return self

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """Stop serving (idempotent). Open keep-alive connections are closed.

        ``wait=False`` only asks the server to stop; a later ``stop()`` waits for
        it. That lets several servers shut down in parallel.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        if not wait:
            return
        thread.join(min(timeout, 1.0))
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._url if self.running else "stopped"
        return f"<{type(self).__name__} {where}>"


class DemoServer(ThreadedServer):
    """The demo API in a background thread, on ``127.0.0.1`` and a free port.

    >>> with DemoServer(access_ttl=1) as api:           # doctest: +SKIP
    ...     requests.post(f"{api.url}/auth/token", data={...})

    Keyword arguments override fields of ``config``. ``.config.port`` is the real
    port once started. ``.state`` gives direct access to the statistics and clock.
    uvicorn logs at ``log_level`` ("warning" unless a config says otherwise), to
    the ``uvicorn`` loggers only (no handlers are installed; no access log).
    """

    def __init__(
        self,
        config: DemoConfig | None = None,
        *,
        port: int = 0,
        log_level: str | None = None,
        **overrides: Any,
    ) -> None:
        if log_level is None:
            # Quiet by default; an explicit config keeps its own level.
            log_level = "warning" if config is None else config.log_level
        config = (config or DemoConfig()).replace(log_level=log_level, **overrides)
        super().__init__(None, host=config.host, port=port, log_level=log_level, name="demo API")
        self.config = config
        self.app: Starlette = create_app(config)
        self.state: DemoState = self.app.state.demo

    def start(self, timeout: float = 10.0) -> DemoServer:
        super().start(timeout)
        port = int(self.url.rsplit(":", 1)[1])
        self.config = self.config.replace(port=port)
        return self

    def __enter__(self) -> DemoServer:
        return self.start()

    @property
    def token_url(self) -> str:
        return f"{self.url}/auth/token"

    @property
    def credentials(self) -> dict[str, str]:
        """``{"username": ..., "password": ...}`` of the demo user."""
        return {"username": self.config.username, "password": self.config.password}

    def stats(self) -> dict[str, Any]:
        """The same counters as ``GET /_stats``, read directly."""
        return self.state.stats()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    def advance_clock(self, seconds: float) -> None:
        """Make the server's clock run ``seconds`` ahead (expires tokens without sleeping)."""
        self.state.advance_clock(seconds)

    def reset(self) -> None:
        """Reset the statistics and the clock (tokens and revocations are kept)."""
        self.state.reset_stats()
        self.state.reset_clock()
