"""The identity provider (oidc-provider under Node) and an API protected by it, on 127.0.0.1.

Fixtures
--------
``idp_factory`` (function)
    ``idp_factory(access_ttl=60, refresh_ttl=3600, device_ttl=120, interval=1, slow_down=0,
    recorded=False)`` -> :class:`IdentityProvider`, started (``recorded``: behind a
    :class:`RecordingProxy`); stopped after the test.
``idp`` (module)
    One provider with the default settings.
``recorded_idp`` (function)
    A provider behind a :class:`RecordingProxy` (its issuer is the proxy's address):
    every request to the issuer, and every answer, is recorded.
``oauth_api_factory`` / ``oauth_api``
    A :class:`ProtectedApi` that accepts a bearer token only when the provider's
    introspection endpoint calls it active (it authenticates there as client ``api``).

The provider needs ``node`` and the npm packages of tests/idp (``make idp`` installs
them, ``make test`` does it first). Missing, the fixtures fail with that advice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from session_magics.demo import ThreadedServer
from tests.servers import record_of, stopped_afterwards

__all__ = [
    "API_SECRET",
    "CLIENT_SECRET",
    "IdentityProvider",
    "ProtectedApi",
    "RecordingProxy",
    "recorded_idp",
    "idp",
    "idp_factory",
    "oauth_api",
    "oauth_api_factory",
]

IDP_DIR = Path(__file__).resolve().parent
CLIENT_SECRET = "robot-secret-for-tests-0b7e"  # the confidential client "robot"
API_SECRET = "api-secret-for-tests-41c2"  # the API's own client, for introspection


class IdentityProvider:
    """``node tests/idp/provider.mjs``: an OpenID provider on an ephemeral port."""

    def __init__(self, **settings: int) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[str] | None = None
        self.issuer = ""
        self.listen = ""
        self.proxy: RecordingProxy | None = None
        self._stderr: list[str] = []

    def start(self, timeout: float = 30.0) -> IdentityProvider:
        node = shutil.which("node")
        if node is None:
            pytest.fail(
                "node is not installed: run `make system-deps` (the tests' identity provider runs on Node)"
            )
        if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.fail("the identity provider's npm packages are missing: run `make idp`")
        env = {
            **os.environ,
            "IDP_CLIENT_SECRET": CLIENT_SECRET,
            "IDP_API_SECRET": API_SECRET,
            **{f"IDP_{k.upper()}": str(v) for k, v in self.settings.items()},
        }
        if self.proxy is not None:
            env["IDP_ISSUER"] = self.proxy.url
        self.proc = subprocess.Popen(
            [node, str(IDP_DIR / "provider.mjs")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=IDP_DIR,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        line = _readline(self.proc, timeout)
        if not line:
            self.stop()
            pytest.fail(f"the identity provider did not start: {''.join(self._stderr)[-2000:]}")
        started = json.loads(line)
        self.issuer, self.listen = started["issuer"], started["listen"]
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> IdentityProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # What an application does with the provider, through its public endpoints.
    def introspect(self, token: str) -> dict[str, Any]:
        resp = requests.post(
            f"{self.listen}/token/introspection", data={"token": token}, auth=("api", API_SECRET), timeout=10
        )
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]

    def revoke(self, token: str, client_id: str = "notebook") -> None:
        resp = requests.post(
            f"{self.listen}/token/revocation", data={"token": token, "client_id": client_id}, timeout=10
        )
        resp.raise_for_status()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(
        target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    t.start()
    t.join(timeout)
    return box[0] if box else ""


class ProtectedApi(ThreadedServer):
    """An API on its own origin that checks bearer tokens at the provider (introspection).

    ``GET /me`` answers the token's subject, client and scope; any other path answers
    ``{"path": ..., "sub": ...}``. A missing or inactive token: 401 with
    ``WWW-Authenticate: Bearer error="invalid_token"``. Every request is recorded.
    """

    def __init__(self, idp: IdentityProvider) -> None:
        self.idp = idp
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self.introspections = 0
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        super().__init__(app, name="protected-api")

    async def _handle(self, request: Request) -> Response:
        import anyio

        body = await request.body()
        raw = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]]
        record = {
            "method": request.method,
            "path": request.url.path,
            "query": request.scope.get("query_string", b"").decode("latin-1"),
            "raw_headers": raw,
            "body": body,
            "status": 0,
        }
        with self._lock:
            self._requests.append(record)
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        info: dict[str, Any] = {"active": False}
        if token:
            info = await anyio.to_thread.run_sync(self.idp.introspect, token)
            self.introspections += 1
        if not info.get("active"):
            record["status"] = 401
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        record["status"] = 200
        who = {"sub": info.get("sub"), "client_id": info.get("client_id"), "scope": info.get("scope")}
        if request.url.path == "/me":
            return JSONResponse(who)
        return JSONResponse({"path": request.url.path, **who})

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._requests]

    def saw(self, text: str) -> bool:
        return any(
            text in r["path"]
            or text in r["query"]
            or any(text in v for _, v in r["raw_headers"])
            or text.encode() in r["body"]
            for r in self.requests()
        )

    def statuses(self) -> list[int]:
        return [r["status"] for r in self.requests()]


class RecordingProxy(ThreadedServer):
    """The issuer's address: forwards everything to the provider and records each request
    (method, path, query, headers, body) with the answer's body."""

    HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"})

    def __init__(self) -> None:
        self.target = ""
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._http = requests.Session()
        self._http.trust_env = False
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE", "HEAD"])]
        )
        super().__init__(app, name="issuer-proxy")

    async def _handle(self, request: Request) -> Response:
        import anyio

        record = await record_of(request)
        query = record["query"]
        url = f"{self.target}{request.url.path}" + (f"?{query}" if query else "")

        def forward() -> requests.Response:
            headers = {k: v for k, v in record["raw_headers"] if k not in self.HOP}
            return self._http.request(
                request.method, url, headers=headers, data=record["body"], allow_redirects=False, timeout=30
            )

        answer = await anyio.to_thread.run_sync(forward)
        record.update(status=answer.status_code, answer=answer.content, at=time.monotonic())
        with self._lock:
            self._records.append(record)
        response = Response(answer.content, status_code=answer.status_code)
        for key, value in answer.raw.headers.items():
            if key.lower() not in self.HOP:
                response.headers.append(key, value)
        return response

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]


@pytest.fixture
def recorded_idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.proxy = RecordingProxy().start()
    try:
        provider.start()
        provider.proxy.target = provider.listen
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def idp_factory() -> Iterator[Callable[..., IdentityProvider]]:
    started: list[IdentityProvider] = []

    def make(*, recorded: bool = False, **settings: int) -> IdentityProvider:
        provider = IdentityProvider(**settings)
        started.append(provider)
        if recorded:
            provider.proxy = RecordingProxy().start()
        provider.start()
        if provider.proxy is not None:
            provider.proxy.target = provider.listen
        return provider

    yield make
    for provider in started:
        provider.stop()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider() as provider:
        yield provider


@pytest.fixture
def oauth_api_factory() -> Iterator[Callable[[IdentityProvider], ProtectedApi]]:
    with stopped_afterwards(lambda provider: ProtectedApi(provider).start()) as make:
        yield make


@pytest.fixture
def oauth_api(
    idp: IdentityProvider, oauth_api_factory: Callable[[IdentityProvider], ProtectedApi]
) -> ProtectedApi:
    return oauth_api_factory(idp)
