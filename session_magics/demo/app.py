"""The demo token API: a small Starlette application.

It implements the token flows that notebooks meet in the wild, closely enough to
exercise a client against them:

* OAuth 2 style (RFC 6749): ``POST /auth/token`` with the password grant (form or
  JSON) and the refresh-token grant, rotating refresh tokens; ``POST /auth/revoke``
  (RFC 7009).
* djangorestframework-simplejwt style: ``POST /auth/jwt`` and ``/auth/jwt/refresh``.
* A long-lived API key: ``POST /auth/apikey`` (``Bearer``, ``Token`` or ``X-API-Key``).

Access tokens are HS256 JWTs signed with a secret made at start-up; everything
else (refresh tokens, revocations, statistics) lives in memory. Nothing here logs
a token or a password, and no URL the API produces carries one.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import math
import os
import secrets
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import data
from .config import DemoConfig

__all__ = ["DemoState", "Principal", "create_app"]

JWT_ALGORITHM = "HS256"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Request headers ``/echo`` never sends back: they carry credentials.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 500
MAX_RECORDS = 1_000_000
MAX_RECORDS_PER_PAGE = 10_000
MAX_BIG_MB = 256.0
MAX_BINARY_KB = 100 * 1024
MAX_SLOW_SECONDS = 60.0

Endpoint = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """A query parameter or body the endpoint cannot use (answered with 400)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class _InvalidToken(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass
class _RefreshRecord:
    username: str
    family: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as, and with what kind of token."""

    username: str
    kind: str  # "access" (a JWT) or "apikey"
    expires_at: float | None
    jti: str | None = None


@dataclass
class _Stats:
    password_grants: int = 0
    refresh_grants: int = 0
    refresh_failures: int = 0
    login_failures: int = 0
    revocations: int = 0
    unauthorized: int = 0
    requests_by_path: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "password_grants": self.password_grants,
            "refresh_grants": self.refresh_grants,
            "refresh_failures": self.refresh_failures,
            "login_failures": self.login_failures,
            "revocations": self.revocations,
            "unauthorized": self.unauthorized,
            "requests_by_path": dict(self.requests_by_path),
        }


class DemoState:
    """Everything the demo API remembers: signing secret, tokens, statistics.

    Request handlers run on the server's event loop; tests may call
    :meth:`stats`, :meth:`reset_stats` and :meth:`advance_clock` from another
    thread, so every mutation happens under a lock.
    """

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._clock_offset = 0.0
        self._refresh: dict[str, _RefreshRecord] = {}
        self._revoked_jtis: set[str] = set()
        self._revoked_families: set[str] = set()
        self._api_keys: dict[str, str] = {}  # key -> username
        self._api_key_of: dict[str, str] = {}  # username -> key
        self._stats = _Stats()
        self._issued: list[str] = []  # every token and key handed out, for leak tests
        self.latency_ms = config.latency_ms  # POST /_latency?ms= changes it

    # -- clock and statistics -------------------------------------------------

    def now(self) -> float:
        """The server's idea of the current time (``time.time()`` plus any offset)."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward, e.g. to expire tokens without sleeping.

        Tokens issued afterwards carry ``iat``/``exp`` on the shifted clock too.
        """
        with self._lock:
            self._clock_offset += seconds

    def reset_clock(self) -> None:
        """Undo :meth:`advance_clock`."""
        with self._lock:
            self._clock_offset = 0.0

    def stats(self) -> dict[str, Any]:
        """Counters since start-up or the last reset (what ``GET /_stats`` answers).

        ``password_grants`` counts successful logins on any of the three login
        endpoints, ``refresh_grants``/``refresh_failures`` both refresh styles,
        ``unauthorized`` every request rejected for a missing or bad token, and
        ``requests_by_path`` every request except those to ``/_…`` paths.
        """
        with self._lock:
            return self._stats.as_dict()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = _Stats()

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    def count_request(self, path: str) -> None:
        with self._lock:
            self._stats.requests_by_path[path] += 1

    # -- issuing --------------------------------------------------------------

    def check_credentials(self, username: str, password: str) -> bool:
        ok_user = secrets.compare_digest(username.encode(), self.config.username.encode())
        ok_pass = secrets.compare_digest(password.encode(), self.config.password.encode())
        return ok_user and ok_pass

    def _jwt(self, username: str, family: str, token_type: str, ttl: float) -> tuple[str, int]:
        now = self.now()
        exp = math.ceil(now + ttl)
        claims = {
            "sub": username,
            "iat": int(now),
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "sid": family,
            "token_type": token_type,
        }
        token = jwt.encode(claims, self._secret, algorithm=JWT_ALGORITHM)
        with self._lock:
            self._issued.append(token)
        return token, exp

    def issue_access(self, username: str, family: str) -> tuple[str, int]:
        """A signed access JWT and its ``exp`` (whole seconds, rounded up)."""
        return self._jwt(username, family, "access", self.config.access_ttl)

    def issue_refresh(self, username: str, family: str) -> str:
        """An opaque, single-use refresh token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[token] = _RefreshRecord(username, family, self.now() + self.config.refresh_ttl)
            self._issued.append(token)
        return token

    def issue_jwt_refresh(self, username: str, family: str) -> str:
        """A refresh JWT (simplejwt style); single-use once rotated."""
        return self._jwt(username, family, "refresh", self.config.refresh_ttl)[0]

    def api_key(self, username: str) -> str:
        """The user's API key, created on first use (like DRF's ``authtoken``)."""
        with self._lock:
            key = self._api_key_of.get(username)
            if key is None:
                key = secrets.token_urlsafe(32)
                self._api_key_of[username] = key
                self._api_keys[key] = username
                self._issued.append(key)
            return key

    def issued_secrets(self) -> list[str]:
        """Every access token, refresh token and API key issued so far (for tests that
        search artefacts for leaked secrets)."""
        with self._lock:
            return list(self._issued)

    # -- checking -------------------------------------------------------------

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                options={
                    "require": ["sub", "iat", "exp", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise _InvalidToken("The token is malformed or its signature is invalid") from None
        return claims

    def _check_jwt(self, token: str, token_type: str) -> dict[str, Any]:
        claims = self._decode(token)
        if claims.get("token_type", "access") != token_type:
            article = "an" if token_type == "access" else "a"
            raise _InvalidToken(f"Not {article} {token_type} token")
        with self._lock:
            if claims["jti"] in self._revoked_jtis or claims.get("sid") in self._revoked_families:
                raise _InvalidToken("The token has been revoked")
        if self.now() >= float(claims["exp"]):
            raise _InvalidToken("The token expired")
        return claims

    def check_access(self, token: str) -> Principal:
        claims = self._check_jwt(token, "access")
        return Principal(str(claims["sub"]), "access", float(claims["exp"]), str(claims["jti"]))

    def check_api_key(self, key: str) -> Principal | None:
        with self._lock:
            username = self._api_keys.get(key)
        return None if username is None else Principal(username, "apikey", None)

    def rotate_refresh(self, token: str) -> tuple[str, str]:
        """Use an opaque refresh token once: its (username, family), or ``_InvalidToken``."""
        with self._lock:
            record = self._refresh.get(token)
            if record is None:
                raise _InvalidToken("The refresh token is unknown")
            if record.family in self._revoked_families:
                raise _InvalidToken("The refresh token has been revoked")
            if record.used:
                raise _InvalidToken("The refresh token has already been used")
            if self.now() >= record.expires_at:
                raise _InvalidToken("The refresh token expired")
            record.used = True
            return record.username, record.family

    def rotate_jwt_refresh(self, token: str) -> tuple[str, str]:
        """Use a refresh JWT once (it is blacklisted): its (username, family)."""
        claims = self._check_jwt(token, "refresh")
        with self._lock:
            if claims["jti"] in self._revoked_jtis:
                raise _InvalidToken("The token has been revoked")
            self._revoked_jtis.add(claims["jti"])
        return str(claims["sub"]), str(claims.get("sid", ""))

    def revoke(self, token: str) -> bool:
        """Revoke any kind of token; False if the token was not recognised.

        Revoking a refresh token also revokes every token issued in the same
        login (RFC 7009 §2.1); revoking an access token revokes only that token.
        """
        with self._lock:
            record = self._refresh.get(token)
            if record is not None:
                self._revoked_families.add(record.family)
                return True
            username = self._api_keys.pop(token, None)
            if username is not None:
                self._api_key_of.pop(username, None)
                return True
        try:
            claims = self._decode(token)
        except _InvalidToken:
            return False
        with self._lock:
            if claims.get("token_type") == "refresh" and claims.get("sid"):
                self._revoked_families.add(str(claims["sid"]))
            self._revoked_jtis.add(str(claims["jti"]))
        return True

    # -- requests -------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal | Response:
        """The request's principal, or the error response to send instead."""
        header = request.headers.get("authorization")
        api_key = request.headers.get("x-api-key")
        try:
            if header:
                scheme, _, credentials = header.partition(" ")
                credentials = credentials.strip()
                scheme = scheme.lower()
                if scheme not in ("bearer", "token") or not credentials:
                    raise _InvalidToken("Use 'Authorization: Bearer <access token>'")
                principal = self.check_api_key(credentials)
                if principal is not None:
                    return principal
                if scheme == "token":
                    raise _InvalidToken("The API key is unknown or has been revoked")
                return self.check_access(credentials)
            if api_key:
                principal = self.check_api_key(api_key.strip())
                if principal is None:
                    raise _InvalidToken("The API key is unknown or has been revoked")
                return principal
        except _InvalidToken as exc:
            return self._unauthorized(exc.description)
        return self._unauthorized(None)

    def _unauthorized(self, description: str | None) -> Response:
        self.count("unauthorized")
        realm = self.config.realm
        if description is None:
            challenge = f'Bearer realm="{realm}"'
            body = {"error": "invalid_token", "error_description": "No access token was sent"}
        else:
            challenge = f'Bearer realm="{realm}", error="invalid_token", error_description="{description}"'
            body = {"error": "invalid_token", "error_description": description}
        return JSONResponse(
            body,
            status_code=self.config.expired_status,
            headers={"WWW-Authenticate": challenge},
        )


# -- helpers ----------------------------------------------------------------------


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=NO_STORE
    )


async def _read_params(request: Request) -> tuple[dict[str, Any], bool]:
    """The body of a token request as a dict, and whether it was JSON.

    Forms (``application/x-www-form-urlencoded``) and JSON objects are accepted.
    Raises :class:`BadRequest` for anything else.
    """
    body = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    looks_json = ctype.endswith("json") or (not ctype and body.lstrip().startswith(b"{"))
    if looks_json:
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("The request body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise BadRequest("The request body must be a JSON object")
        return parsed, True
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise BadRequest("Send a form (application/x-www-form-urlencoded) or a JSON object")
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequest("The form is not valid UTF-8") from None
    params: dict[str, Any] = {}
    for key, value in pairs:
        if key in params:
            raise BadRequest(f"The parameter {key!r} is repeated")
        params[key] = value
    return params, False


def _str_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string")
    return value


def _int_query(request: Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name!r} must be an integer") from None
    if value < lo:
        raise BadRequest(f"{name!r} must be at least {lo}")
    return value if hi is None else min(value, hi)


def _float_query(request: Request, name: str, default: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name!r} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name!r} must be a non-negative number")
    return min(value, hi)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _page_url(request: Request, **params: Any) -> str:
    return str(request.url.include_query_params(**params))


def _paginate(
    request: Request,
    items: Sequence[Any] | None,
    *,
    total: int | None = None,
    get: Callable[[int, int], list[Any]] | None = None,
    max_per_page: int = MAX_PER_PAGE,
) -> Response:
    """Page-number pagination: ``Link`` header plus ``{page, per_page, total, next, ...}``."""
    page = _int_query(request, "page", 1, 1)
    per_page = _int_query(request, "per_page", DEFAULT_PER_PAGE, 1, max_per_page)
    if items is not None:
        total = len(items)
    assert total is not None
    start = (page - 1) * per_page
    end = min(start + per_page, total)
    if start >= total:
        results: list[Any] = []
    elif items is not None:
        results = list(items[start:end])
    else:
        assert get is not None
        results = get(start, end)
    last = max(1, math.ceil(total / per_page))
    next_url = _page_url(request, page=page + 1, per_page=per_page) if page < last else None
    prev_url = _page_url(request, page=min(page - 1, last), per_page=per_page) if page > 1 else None
    links = []
    if next_url:
        links.append(f'<{next_url}>; rel="next"')
    if prev_url:
        links.append(f'<{prev_url}>; rel="prev"')
    links.append(f'<{_page_url(request, page=1, per_page=per_page)}>; rel="first"')
    links.append(f'<{_page_url(request, page=last, per_page=per_page)}>; rel="last"')
    body = {
        "page": page,
        "per_page": per_page,
        "total": total,
        "next": next_url,
        "prev": prev_url,
        "results": results,
    }
    return JSONResponse(body, headers={"Link": ", ".join(links)})


def _decode_cursor(cursor: str) -> int:
    try:
        return data.decode_cursor("offset", cursor)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _filtered_penguins(request: Request) -> tuple[dict[str, Any], ...]:
    rows = data.penguins()
    for name in ("species", "island", "sex"):
        wanted = request.query_params.get(name)
        if wanted:
            wanted = wanted.lower()
            rows = tuple(r for r in rows if str(r[name]).lower() == wanted)
    return rows


class _CountRequests:
    """ASGI middleware: counts requests per path (except the ``/_…`` ones)."""

    def __init__(self, app: ASGIApp, state: DemoState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_"):
            self.state.count_request(scope["path"])
        await self.app(scope, receive, send)


class _Latency:
    """ASGI middleware: every answer waits ``latency_ms`` first (not ``/_…``, ``/healthz``).

    The wait is asynchronous: requests sent at once are answered at once, as by a
    real API some distance away.
    """

    def __init__(self, app: ASGIApp, state: DemoState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.state.latency_ms / 1000
        if delay > 0 and scope["type"] == "http" and not scope["path"].startswith(("/_", "/healthz")):
            await asyncio.sleep(delay)
        await self.app(scope, receive, send)


# -- the application --------------------------------------------------------------


class _Endpoints:
    def __init__(self, state: DemoState) -> None:
        self.state = state
        self.config = state.config

    def protected(self, endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def wrapper(request: Request) -> Response:
            result = self.state.authenticate(request)
            if isinstance(result, Response):
                return result
            request.state.principal = result
            return await endpoint(request)

        return wrapper

    # -- public ---------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "name": "session-magics demo API",
                "token_endpoint": f"{base}/auth/token",
                "endpoints": list(ENDPOINT_DOCS),
            }
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.state.stats())

    async def reset_stats(self, request: Request) -> Response:
        self.state.reset_stats()
        return JSONResponse({"ok": True})

    async def latency(self, request: Request) -> Response:
        """``POST /_latency?ms=50``: every answer from now on waits that long (0: none)."""
        self.state.latency_ms = _float_query(request, "ms", 0.0, 60_000.0)
        return JSONResponse({"latency_ms": self.state.latency_ms})

    async def redirect(self, request: Request) -> Response:
        target = request.query_params.get("to")
        if not target:
            raise BadRequest("'to' is required")
        status = _int_query(request, "status", 302, 300)
        if status not in REDIRECT_STATUSES:
            raise BadRequest(f"'status' must be one of {sorted(REDIRECT_STATUSES)}")
        return RedirectResponse(target, status_code=status)

    # -- OAuth 2 --------------------------------------------------------------

    def _token_response(self, username: str, family: str) -> Response:
        access, exp = self.state.issue_access(username, family)
        refresh = self.state.issue_refresh(username, family)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": max(1, int(exp - self.state.now())),
                "refresh_token": refresh,
            },
            headers=NO_STORE,
        )

    async def token(self, request: Request) -> Response:
        try:
            params, is_json = await _read_params(request)
            grant = _str_param(params, "grant_type")
            if grant is None:
                if not is_json:
                    return _oauth_error("invalid_request", "'grant_type' is required")
                has_refresh = "refresh_token" in params and "username" not in params
                grant = "refresh_token" if has_refresh else "password"
            if grant == "password":
                username = _str_param(params, "username")
                password = _str_param(params, "password")
                if username is None or password is None:
                    return _oauth_error("invalid_request", "'username' and 'password' are required")
                if not self.state.check_credentials(username, password):
                    self.state.count("login_failures")
                    return _oauth_error("invalid_grant", "Wrong username or password")
                self.state.count("password_grants")
                return self._token_response(username, uuid.uuid4().hex)
            if grant == "refresh_token":
                token = _str_param(params, "refresh_token")
                if token is None:
                    return _oauth_error("invalid_request", "'refresh_token' is required")
                try:
                    username, family = self.state.rotate_refresh(token)
                except _InvalidToken as exc:
                    self.state.count("refresh_failures")
                    return _oauth_error("invalid_grant", exc.description)
                self.state.count("refresh_grants")
                return self._token_response(username, family)
        except BadRequest as exc:
            return _oauth_error("invalid_request", exc.description)
        return _oauth_error("unsupported_grant_type", "Supported grant types: password, refresh_token")

    async def revoke(self, request: Request) -> Response:
        try:
            params, _ = await _read_params(request)
            token = _str_param(params, "token")
        except BadRequest as exc:
            return _oauth_error("invalid_request", exc.description)
        if token is None:
            return _oauth_error("invalid_request", "'token' is required")
        if self.state.revoke(token):
            self.state.count("revocations")
        return Response(status_code=200, headers=NO_STORE)

    # -- simplejwt style ------------------------------------------------------

    @staticmethod
    def _required(params: dict[str, Any], *names: str) -> Response | None:
        missing = {n: ["This field is required."] for n in names if not params.get(n)}
        return JSONResponse(missing, status_code=400) if missing else None

    async def jwt_obtain(self, request: Request) -> Response:
        try:
            params, _ = await _read_params(request)
        except BadRequest as exc:
            return JSONResponse({"detail": exc.description}, status_code=400)
        missing = self._required(params, "username", "password")
        if missing is not None:
            return missing
        username, password = str(params["username"]), str(params["password"])
        if not self.state.check_credentials(username, password):
            self.state.count("login_failures")
            return JSONResponse(
                {"detail": "No active account found with the given credentials"},
                status_code=401,
                headers={"WWW-Authenticate": f'Bearer realm="{self.config.realm}"'},
            )
        self.state.count("password_grants")
        family = uuid.uuid4().hex
        access, _ = self.state.issue_access(username, family)
        refresh = self.state.issue_jwt_refresh(username, family)
        return JSONResponse({"access": access, "refresh": refresh}, headers=NO_STORE)

    async def jwt_refresh(self, request: Request) -> Response:
        try:
            params, _ = await _read_params(request)
        except BadRequest as exc:
            return JSONResponse({"detail": exc.description}, status_code=400)
        missing = self._required(params, "refresh")
        if missing is not None:
            return missing
        try:
            username, family = self.state.rotate_jwt_refresh(str(params["refresh"]))
        except _InvalidToken as exc:
            self.state.count("refresh_failures")
            detail = (
                "Token is blacklisted" if "revoked" in exc.description else ("Token is invalid or expired")
            )
            return JSONResponse(
                {"detail": detail, "code": "token_not_valid"},
                status_code=401,
                headers={"WWW-Authenticate": f'Bearer realm="{self.config.realm}"'},
            )
        self.state.count("refresh_grants")
        access, _ = self.state.issue_access(username, family)
        refresh = self.state.issue_jwt_refresh(username, family)
        return JSONResponse({"access": access, "refresh": refresh}, headers=NO_STORE)

    # -- API key --------------------------------------------------------------

    async def apikey(self, request: Request) -> Response:
        try:
            params, _ = await _read_params(request)
        except BadRequest as exc:
            return JSONResponse({"detail": exc.description}, status_code=400)
        missing = self._required(params, "username", "password")
        if missing is not None:
            return missing
        if not self.state.check_credentials(str(params["username"]), str(params["password"])):
            self.state.count("login_failures")
            return JSONResponse(
                {"non_field_errors": ["Unable to log in with provided credentials."]},
                status_code=400,
            )
        self.state.count("password_grants")
        return JSONResponse({"token": self.state.api_key(str(params["username"]))}, headers=NO_STORE)

    # -- protected --------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        principal: Principal = request.state.principal
        return JSONResponse(
            {
                "username": principal.username,
                "token_expires_at": _iso(principal.expires_at),
                "token_kind": principal.kind,
            }
        )

    async def penguins(self, request: Request) -> Response:
        return _paginate(request, _filtered_penguins(request))

    async def penguins_cursor(self, request: Request) -> Response:
        rows = _filtered_penguins(request)
        cursor = request.query_params.get("cursor")
        offset = _decode_cursor(cursor) if cursor else 0
        limit = _int_query(request, "limit", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        end = offset + limit
        next_cursor = data.encode_cursor("offset", end) if end < len(rows) else None
        return JSONResponse(
            {"data": list(rows[offset:end]), "meta": {"next_cursor": next_cursor, "total": len(rows)}}
        )

    async def penguins_pages(self, request: Request) -> Response:
        rows = _filtered_penguins(request)
        page = _int_query(request, "page", 1, 1)
        per_page = _int_query(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        start = (page - 1) * per_page
        has_next = start + per_page < len(rows)
        return JSONResponse(
            {
                "items": list(rows[start : start + per_page]),
                "links": {
                    "self": _page_url(request, page=page),
                    "next": _page_url(request, page=page + 1) if has_next else None,
                    "prev": _page_url(request, page=page - 1) if page > 1 else None,
                },
            }
        )

    async def records(self, request: Request) -> Response:
        n = _int_query(request, "n", 1000, 0, MAX_RECORDS)
        return _paginate(
            request,
            None,
            total=n,
            get=lambda start, end: [data.synthetic_record(i) for i in range(start + 1, end + 1)],
            max_per_page=MAX_RECORDS_PER_PAGE,
        )

    async def small(self, request: Request) -> Response:
        return Response(data.SMALL_BODY, media_type="application/json")

    async def big(self, request: Request) -> Response:
        mb = _float_query(request, "mb", 1.0, MAX_BIG_MB)
        body = await asyncio.to_thread(data.big_json, mb)
        return Response(body, media_type="application/json")

    async def binary(self, request: Request) -> Response:
        kb = _int_query(request, "kb", 64, 0, MAX_BINARY_KB)
        return Response(os.urandom(kb * 1024), media_type="application/octet-stream")

    async def slow(self, request: Request) -> Response:
        seconds = _float_query(request, "seconds", 1.0, MAX_SLOW_SECONDS)
        await asyncio.sleep(seconds)
        return JSONResponse({"slept": seconds})

    async def status(self, request: Request) -> Response:
        code: int = request.path_params["code"]
        if not 200 <= code <= 599:
            raise BadRequest("'code' must be between 200 and 599")
        headers = {}
        retry_after = request.query_params.get("retry_after")
        if retry_after:
            headers["Retry-After"] = str(_int_query(request, "retry_after", 0, 0))
        if code in (204, 304):
            return Response(status_code=code, headers=headers)
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = "Unknown status"
        body = {"error": phrase, "status": code}
        return JSONResponse(body, status_code=code, headers=headers)

    async def html(self, request: Request) -> Response:
        return Response(HTML_PAGE, media_type="text/html")

    async def text(self, request: Request) -> Response:
        return PlainTextResponse("Hello from the penguin colony.\nThis is plain text.\n")

    async def malformed(self, request: Request) -> Response:
        return Response(b'{"results": [{"id": 1, "name": "broken', media_type="application/json")

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            if name in SECRET_HEADERS:
                continue
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        json_body: Any = None
        text_body: str | None = None
        if body:
            text_body = body.decode("utf-8", errors="replace")
            try:
                json_body = json.loads(body)
                text_body = None
            except (ValueError, UnicodeDecodeError):
                json_body = None
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params.multi_items()),
                "headers": headers,
                "json": json_body,
                "text": text_body,
                "length": len(body),
            }
        )


HTML_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Penguins</title></head>
<body><h1>Penguins</h1><p>This endpoint answers HTML, not JSON.</p>
<ul><li>Adelie</li><li>Chinstrap</li><li>Gentoo</li></ul></body></html>
"""

ENDPOINT_DOCS: tuple[str, ...] = (
    "POST /auth/token  (password and refresh_token grants, form or JSON)",
    "POST /auth/revoke  (token=...)",
    "POST /auth/jwt, POST /auth/jwt/refresh  (simplejwt style)",
    "POST /auth/apikey  (long-lived key: Bearer, Token or X-API-Key)",
    "GET /me",
    "GET /penguins?page=&per_page=&species=&island=",
    "GET /penguins/cursor?cursor=&limit=",
    "GET /penguins/pages?page=",
    "GET /records?n=&page=&per_page=",
    "GET /small, /big?mb=, /binary?kb=, /slow?seconds=, /status/{code}?retry_after=",
    "GET /html, /text, /malformed",
    "POST /echo",
    "POST /graphql  (GraphQL: penguins(first:, after:, species:) as a Relay connection, penguin(id:))",
    "GET /redirect?to=&status=  (no token needed)",
    "GET /_stats, POST /_reset_stats, POST /_latency?ms=, GET /healthz  (no token needed)",
)


def _routes(e: _Endpoints) -> list[Route]:
    p = e.protected
    public: Iterable[tuple[str, Endpoint, list[str]]] = [
        ("/", e.index, ["GET"]),
        ("/healthz", e.healthz, ["GET"]),
        ("/_stats", e.stats, ["GET"]),
        ("/_reset_stats", e.reset_stats, ["POST"]),
        ("/_latency", e.latency, ["POST"]),
        ("/redirect", e.redirect, ["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ("/auth/token", e.token, ["POST"]),
        ("/auth/revoke", e.revoke, ["POST"]),
        ("/auth/jwt", e.jwt_obtain, ["POST"]),
        ("/auth/jwt/refresh", e.jwt_refresh, ["POST"]),
        ("/auth/apikey", e.apikey, ["POST"]),
    ]
    protected: Iterable[tuple[str, Endpoint, list[str]]] = [
        ("/me", e.me, ["GET"]),
        ("/penguins", e.penguins, ["GET"]),
        ("/penguins/cursor", e.penguins_cursor, ["GET"]),
        ("/penguins/pages", e.penguins_pages, ["GET"]),
        ("/records", e.records, ["GET"]),
        ("/small", e.small, ["GET"]),
        ("/big", e.big, ["GET"]),
        ("/binary", e.binary, ["GET"]),
        ("/slow", e.slow, ["GET"]),
        ("/status/{code:int}", e.status, ["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ("/html", e.html, ["GET"]),
        ("/text", e.text, ["GET"]),
        ("/malformed", e.malformed, ["GET"]),
        ("/echo", e.echo, ["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    routes = [Route(path, fn, methods=methods) for path, fn, methods in public]
    routes += [Route(path, p(fn), methods=methods) for path, fn, methods in protected]
    from .graphql import GraphQLEndpoint

    routes.append(Route("/graphql", GraphQLEndpoint(e.state), methods=["GET", "POST"]))  # checks the token
    return routes


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": "invalid_request", "error_description": exc.description}, status_code=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse(
        {"error": http.HTTPStatus(exc.status_code).phrase, "status": exc.status_code},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def create_app(config: DemoConfig | None = None) -> Starlette:
    """The demo API as a Starlette application; its state is ``app.state.demo``."""
    config = config or DemoConfig()
    state = DemoState(config)
    app = Starlette(
        routes=_routes(_Endpoints(state)),
        middleware=[Middleware(_CountRequests, state=state), Middleware(_Latency, state=state)],
        exception_handlers={BadRequest: _bad_request, HTTPException: _http_error},
    )
    app.state.demo = state
    return app
