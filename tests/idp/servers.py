"""The identity provider (oidc-provider under Node) and an API protected by it, on 127.0.0.1,
as pytest fixtures. Both live in demo/idp (``make demo-oauth`` runs them too); here they
gain a :class:`RecordingProxy` in front of the provider and fail the test, saying what to
install, where the provider cannot run.

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

The provider needs ``node`` and the npm packages of demo/idp (``make idp`` installs
them, ``make test`` does it first). Missing, the fixtures fail with that advice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from demo.idp import servers
from demo.idp.servers import API_SECRET, CLIENT_SECRET, ProtectedApi, ProviderUnavailable
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


class IdentityProvider(servers.IdentityProvider):
    """demo/idp's provider as the tests start it: behind a :class:`RecordingProxy` when
    ``proxy`` is set (its address is then the issuer); where it cannot run, the test fails
    saying what to install."""

    def __init__(self, **settings: int) -> None:
        super().__init__(**settings)
        self.proxy: RecordingProxy | None = None

    def start(self, timeout: float = 30.0) -> IdentityProvider:
        if self.proxy is not None:
            self.public_issuer = self.proxy.url
        try:
            super().start(timeout)
        except ProviderUnavailable as exc:
            pytest.fail(str(exc))
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        super().stop()

    def __enter__(self) -> IdentityProvider:
        return self.start()


class RecordingProxy(ThreadedServer):
    """The issuer's address: forwards everything to the provider and records each request
    (method, path, query, headers, body) with the answer's body."""

    HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"})

    def __init__(self) -> None:
        self.target = ""
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        # hold_tokens(): a token endpoint answer that carries an access token waits for
        # release_tokens(); token_held is set once one is waiting (a login "in flight").
        self._holding = False
        self.token_held = threading.Event()
        self._release = threading.Event()
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
        if self._holding and request.url.path.endswith("/token") and b'"access_token"' in answer.content:
            self.token_held.set()
            await anyio.to_thread.run_sync(lambda: self._release.wait(60))
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

    def hold_tokens(self) -> None:
        """From now on, keep back the token endpoint's answers that carry a token."""
        self._release.clear()
        self.token_held.clear()
        self._holding = True

    def release_tokens(self) -> None:
        self._holding = False
        self._release.set()


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
