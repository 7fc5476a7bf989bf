"""The OpenID provider (oidc-provider under Node) and an API protected by it, on 127.0.0.1.

`make demo-oauth` runs both (``python -m demo.idp``); the OAuth tests and benchmark start
them through tests/idp/servers.py (pytest fixtures, a recording proxy).

:class:`IdentityProvider`
    ``node demo/idp/provider.mjs``: its clients, lifetimes and pages are described there.
    It needs ``node`` and the npm packages of demo/idp (``make idp`` installs them);
    missing, :meth:`IdentityProvider.start` raises :class:`ProviderUnavailable` saying so.
:class:`ProtectedApi`
    Accepts a bearer token only when the provider's introspection endpoint calls it
    active (it authenticates there as client ``api``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from session_magics.demo import ThreadedServer

__all__ = [
    "API_SECRET",
    "CLIENT_SECRET",
    "IDP_DIR",
    "IdentityProvider",
    "ProtectedApi",
    "ProviderUnavailable",
]

IDP_DIR = Path(__file__).resolve().parent
CLIENT_SECRET = "robot-secret-for-tests-0b7e"  # the confidential client "robot" (tests' default)
API_SECRET = "api-secret-for-tests-41c2"  # the API's own client, for introspection (tests' default)


class ProviderUnavailable(RuntimeError):
    """The provider cannot run here (no node, no npm packages) or did not start."""


class IdentityProvider:
    """``node demo/idp/provider.mjs``: an OpenID provider on 127.0.0.1.

    ``port`` 0: an ephemeral port. ``issuer``: the public address when something stands in
    front of the provider (by default the address it listens on). ``settings`` become the
    provider's ``IDP_*`` variables: ``access_ttl``, ``refresh_ttl``, ``device_ttl``,
    ``interval``, ``slow_down``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        issuer: str | None = None,
        client_secret: str = CLIENT_SECRET,
        api_secret: str = API_SECRET,
        **settings: int,
    ) -> None:
        self.settings = settings
        self.port = port
        self.public_issuer = issuer
        self.client_secret = client_secret
        self.api_secret = api_secret
        self.proc: subprocess.Popen[str] | None = None
        self.issuer = ""
        self.listen = ""
        self._stderr: list[str] = []

    def start(self, timeout: float = 30.0) -> IdentityProvider:
        node = shutil.which("node")
        if node is None:
            raise ProviderUnavailable(
                "node is not installed: run `make system-deps` (the OpenID provider runs on Node)"
            )
        if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise ProviderUnavailable("the OpenID provider's npm packages are missing: run `make idp`")
        env = {
            **os.environ,
            "IDP_PORT": str(self.port),
            "IDP_CLIENT_SECRET": self.client_secret,
            "IDP_API_SECRET": self.api_secret,
            **{f"IDP_{k.upper()}": str(v) for k, v in self.settings.items()},
        }
        if self.public_issuer is not None:
            env["IDP_ISSUER"] = self.public_issuer
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
            raise ProviderUnavailable(f"the OpenID provider did not start: {self.stderr[-2000:]}")
        started = json.loads(line)
        self.issuer, self.listen = started["issuer"], started["listen"]
        return self

    @property
    def stderr(self) -> str:
        """What the provider wrote to stderr so far."""
        return "".join(self._stderr)

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def stop(self) -> None:
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
            f"{self.listen}/token/introspection",
            data={"token": token},
            auth=("api", self.api_secret),
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()

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
    ``WWW-Authenticate: Bearer error="invalid_token"``. With ``record`` (the tests), every
    request is kept, headers and body included; the demo keeps none.
    """

    def __init__(self, idp: IdentityProvider, *, port: int = 0, record: bool = True) -> None:
        self.idp = idp
        self.record = record
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self.introspections = 0
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        super().__init__(app, port=port, name="protected-api")

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
        if self.record:
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
