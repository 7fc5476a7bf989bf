"""Helpers of the security tests: what IPython shows, odd servers, a TLS server.

Everything listens on 127.0.0.1. The servers here are real HTTP servers (uvicorn
in a thread); they misbehave on purpose, the way real login endpoints sometimes do.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import signal
import threading
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from session_magics.demo import DemoConfig, DemoState, ThreadedServer, create_app
from tests.ipython_helpers import CellRun, Shell

PASSWORD_ENV = "SM_SECURITY_PASSWORD"
DEMO_PASSWORD = "c4nary-Pa55word-7183"
TOKEN_ENV = "SM_SECURITY_TOKEN"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shown(run: CellRun) -> str:
    """What a person would read under the cell: stdout and stderr (errors included), no colours."""
    return _ANSI.sub("", run.stdout + run.stderr)


def error_lines(run: CellRun) -> list[str]:
    """The lines IPython showed for the cell's error (its rendered traceback)."""
    assert run.error is not None, shown(run)
    name = type(run.error).__name__
    return [line for line in shown(run).splitlines() if line.startswith(f"{name}:")]


def assert_short_error(run: CellRun, cls: type[BaseException], *words: str) -> str:
    """The cell failed with ``cls``, shown as one line naming the class: no traceback."""
    assert isinstance(run.error, cls), f"{run.error!r}\n{shown(run)}"
    text = shown(run)
    lines = error_lines(run)
    assert len(lines) == 1, text
    assert "Traceback" not in text and "-----" not in text, text
    line = lines[0]
    assert len(line) < 500, line
    for word in words:
        assert word in line, line
    return line


def run_measuring_peak(shell: Shell, source: str) -> tuple[CellRun, int]:
    """Run the cell ``source``; the run, and the peak of the memory Python allocated
    meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        run = shell.run(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return run, peak


def login(shell: Shell, api: Any, extra: str = "") -> CellRun:
    """``%login`` at ``api`` as the demo user, the password from $PASSWORD_ENV; must succeed."""
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} {extra}")
    assert run.error is None, run.all_text
    return run


def session_of(shell: Shell, url: str) -> Any:
    return shell.magics.sessions[url]


@contextmanager
def interrupt_when(ready: Callable[[], bool], *, give_up: float = 60.0) -> Iterator[None]:
    """Send SIGINT to the main thread as soon as ``ready()`` holds (a request reached the
    server, a keyring call is blocked), as the notebook's stop button does.

    Nothing is sent if ``ready()`` never holds within ``give_up`` s: the cell then ends on
    its own, and the test fails on what it shows."""
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + give_up
        while not done.is_set() and time.monotonic() < deadline:
            if ready():
                signal.pthread_kill(main, signal.SIGINT)
                return
            done.wait(0.005)

    watcher = threading.Thread(target=watch, name="interrupt when ready", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)


def issued_secrets(state: DemoState) -> list[str]:
    """Every access token, refresh token and API key the demo API has issued."""
    return state.issued_secrets()


def secret_needles(secret: str) -> list[str]:
    """Strings whose presence in an artefact means ``secret`` leaked, in full or in part.

    The secret itself, and for long ones distinctive slices (a JWT's signature, the
    middle of an opaque token): a truncated token in a message is a leak too.
    """
    needles = [secret]
    if secret.count(".") == 2:  # a JWT: its signature is the unguessable part
        needles.append(secret.rsplit(".", 1)[1])
    if len(secret) >= 24:
        needles += [secret[:16], secret[-16:], secret[len(secret) // 2 - 8 : len(secret) // 2 + 8]]
    return needles


def assert_absent(text: str, *secrets: str) -> None:
    """None of ``secrets``, in full or in part (:func:`secret_needles`), is in ``text``."""
    for secret in secrets:
        for needle in secret_needles(secret):
            assert needle not in text, f"a secret ({needle[:4]}…) is in:\n{text[:3000]}"


# -------------------------------------------------------------- odd auth server
class OddAuthServer(ThreadedServer):
    """Login endpoints that answer the unexpected, and one protected resource.

    POST /html          200 text/html (an SSO login page instead of a token)
    POST /no-token      200 {"status": "ok"}
    POST /echo-error    400 whose error text repeats the submitted password
    POST /deep-json     200 application/json nested 100 000 levels deep
    POST /crlf-token    200 with an access token holding CR LF
    POST /big-token     200 with a 6000-character access token (refreshable)
    GET  /me            200 if the big token (Bearer) is sent, else 401
    """

    def __init__(self) -> None:
        self.big_token = "big-" + secrets.token_urlsafe(4500)
        self.big_refresh = "ref-" + secrets.token_urlsafe(32)
        self.seen: list[dict[str, str]] = []
        app = Starlette(
            routes=[
                Route("/html", self._html, methods=["POST"]),
                Route("/no-token", self._no_token, methods=["POST"]),
                Route("/echo-error", self._echo_error, methods=["POST"]),
                Route("/deep-json", self._deep_json, methods=["POST"]),
                Route("/crlf-token", self._crlf_token, methods=["POST"]),
                Route("/big-token", self._big_token, methods=["POST"]),
                Route("/me", self._me, methods=["GET"]),
            ]
        )
        super().__init__(app, name="odd auth server")

    async def _html(self, request: Request) -> Response:
        page = b"<!DOCTYPE html><html><body><form>Sign in with your company account</form></body></html>"
        return Response(page, media_type="text/html")

    async def _no_token(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _echo_error(self, request: Request) -> Response:
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        return JSONResponse(
            {
                "error": "invalid_grant",
                "error_description": f"password {form.get('password')!s} is wrong for {form.get('username')}",
            },
            status_code=400,
        )

    async def _deep_json(self, request: Request) -> Response:
        depth = 100_000
        return Response(b"[" * depth + b"]" * depth, media_type="application/json")

    async def _crlf_token(self, request: Request) -> Response:
        return JSONResponse({"access_token": "abcd1234\r\nX-Injected: yes", "token_type": "Bearer"})

    async def _big_token(self, request: Request) -> Response:
        return JSONResponse(
            {
                "access_token": self.big_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": self.big_refresh,
            }
        )

    async def _me(self, request: Request) -> Response:
        self.seen.append(dict(request.headers))
        if request.headers.get("authorization") == f"Bearer {self.big_token}":
            return JSONResponse({"username": "big"})
        return JSONResponse({"error": "invalid_token"}, status_code=401)


# ------------------------------------------------------------------- TLS server
class TLSDemoServer(ThreadedServer):
    """The demo API over HTTPS on 127.0.0.1, with a certificate from a throwaway CA.

    ``ca_path`` is the CA's PEM file: point requests at it with REQUESTS_CA_BUNDLE.
    """

    def __init__(self, ca: Any, workdir: str, **overrides: Any) -> None:
        config = DemoConfig(log_level="warning", **overrides)
        self.config = config
        app = create_app(config)
        self.state: DemoState = app.state.demo
        self.cert_path = os.path.join(workdir, "server.pem")
        self.key_path = os.path.join(workdir, "server.key")
        super().__init__(app, name="TLS demo API", ssl_certfile=self.cert_path, ssl_keyfile=self.key_path)
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = os.path.join(workdir, "ca.pem")
        cert.cert_chain_pems[0].write_to_path(self.cert_path)
        for extra in cert.cert_chain_pems[1:]:
            with open(self.cert_path, "ab") as fh:
                fh.write(extra.bytes())
        cert.private_key_pem.write_to_path(self.key_path)
        ca.cert_pem.write_to_path(self.ca_path)


def json_dump(obj: Any) -> str:
    return json.dumps(obj, default=repr, ensure_ascii=False)


# ------------------------------------------------------------------ echo server
class EchoServer(ThreadedServer):
    """A server that repeats the secrets it is sent, the ways careless servers do.

    POST /token?exp=RAW   200: a token response whose ``expires_in`` is RAW, written
                          into the JSON text as it is (``1e308``, ``Infinity``, ``NaN``,
                          ``"123…"``); ``exp=jwt:N`` answers a JWT whose ``exp`` is N
    POST /echo-login      400 whose text repeats the password: plain, HTML-, URL- and
                          JSON-escaped, in an HTML page
    GET  /me              200 {"ok": true} for a token this server issued or was given
                          with ``accept()``, else 401
    GET  /echo/KIND       the bearer token of the request, echoed: ``json`` (200, JSON
                          body, the token plain, URL- and JSON-escaped, also as a key),
                          ``forbidden`` (403 JSON), ``html`` (200 text/html, escaped),
                          ``text`` (200 text/plain, URL-encoded with lower-case hex),
                          ``header`` (200, the token in ``X-Echo`` and ``Location``-like
                          headers), ``records`` (200, a list of records holding it)
    """

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.accepted: set[str] = set()
        app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/echo-login", self._echo_login, methods=["POST"]),
                Route("/me", self._me, methods=["GET"]),
                Route("/echo/{kind}", self._echo, methods=["GET"]),
            ]
        )
        super().__init__(app, name="echo server")

    def accept(self, token: str) -> None:
        self.accepted.add(token)

    async def _token(self, request: Request) -> Response:
        raw = request.query_params.get("exp", "3600")
        if raw.startswith("jwt:"):
            import jwt

            access = jwt.encode({"sub": "demo", "exp": float(raw[4:])}, "k" * 32, algorithm="HS256")
            body = json.dumps({"access_token": access, "token_type": "Bearer"})
        else:
            access = "acc-" + secrets.token_urlsafe(24)
            body = f'{{"access_token": "{access}", "token_type": "Bearer", "expires_in": {raw}}}'
        self.issued.append(access)
        self.accept(access)
        return Response(body, media_type="application/json")

    async def _echo_login(self, request: Request) -> Response:
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        pw = form.get("password", "")
        page = (
            f"<html><body><p>Login failed: password {html.escape(pw)} is wrong "
            f"(tried /login?pw={urllib.parse.quote(pw, safe='')}; "
            f"detail {json.dumps(pw)}; raw {pw})</p></body></html>"
        )
        return Response(page, status_code=400, media_type="text/html")

    def _bearer(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    async def _me(self, request: Request) -> Response:
        if self._bearer(request) in self.accepted:
            return JSONResponse({"ok": True})
        return JSONResponse({"error": "invalid_token"}, status_code=401)

    async def _echo(self, request: Request) -> Response:
        token = self._bearer(request)
        kind = request.path_params["kind"]
        quoted = urllib.parse.quote(token, safe="")
        if kind == "json":
            body = {"you_sent": token, "as_query": f"?t={quoted}", token: "a key", "nested": [{"t": token}]}
            return JSONResponse(body)
        if kind == "forbidden":
            return JSONResponse({"detail": f"token {token} lacks the scope"}, status_code=403)
        if kind == "html":
            return Response(f"<p>Hello {html.escape(token)}</p>", media_type="text/html")
        if kind == "text":
            lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)
            return Response(f"seen: {lower} and {json.dumps(token)}", media_type="text/plain")
        if kind == "header":
            return JSONResponse({"ok": True}, headers={"X-Echo": token, "X-Echo-Url": f"/next?t={quoted}"})
        if kind == "records":
            return JSONResponse({"results": [{"id": 1, "token": token}, {"id": 2, "token": quoted}]})
        return JSONResponse({"error": "unknown kind"}, status_code=404)

    def __enter__(self) -> EchoServer:
        return self.start()
