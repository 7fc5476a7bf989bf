"""The transport: how one request goes over the wire, and what a failure is called.

:class:`Transport` owns one profile's ``requests.Session`` (keep-alive pool, urllib3
``Retry``), the redirect policy (a credential is never handed to another origin),
and the mapping of every failure to a one-line :class:`~session_magics.errors.RequestFailed`.
It knows nothing of tokens' life cycles: :mod:`session_magics.session` decides what to
send, this module sends it.

Failures are named by the *type* of the exceptions along their cause chain (DNS,
refused, reset, TLS, timeout...), never by matching their text.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self

from .errors import Interrupted, RequestFailed, SessionMagicsError
from .profile import Profile, origin_of, url_problem
from .redact import drop_frames, redact_message

if TYPE_CHECKING:
    import requests

DEFAULT_TIMEOUT = 30.0
RETRY_AFTER_MAX = 10.0  # a longer Retry-After is not waited for: the answer is shown at once
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
USER_AGENT = "session-magics/0.1"


# ------------------------------------------------------------------ secrets in messages
# redact_message hides secrets also URL-, JSON- or HTML-escaped (see redact.py); kept
# importable from here.


@contextmanager
def shield(what: str, error: type[SessionMagicsError], *secrets: str | None) -> Iterator[None]:
    """Let only our own errors out of code that holds a secret.

    Any other exception becomes ``error`` with a redacted one-line message, and Ctrl+C
    becomes :class:`~session_magics.errors.Interrupted`: both are shown by IPython as a
    line, never as a traceback, whose ``Verbose`` mode would print the local variables
    (passwords, payloads, headers) of every frame in it.
    """
    try:
        yield
    except SessionMagicsError as exc:
        text = redact_message(str(exc), *secrets)
        if text != str(exc):
            drop_frames(exc)
            raise type(exc)(text) from None
        raise
    except Interrupted:
        raise
    except KeyboardInterrupt as exc:
        drop_frames(exc)  # it stays chained to the new one, but without the frames below
        raise Interrupted(f"{what}: interrupted") from None
    except Exception as exc:
        drop_frames(exc)
        raise error(redact_message(f"{what} failed: {type(exc).__name__}: {exc}", *secrets)) from None


def safe_url(url: str) -> str:
    """A URL for messages: user info hidden, control characters escaped (one line), query
    kept (our own URLs carry no secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    url = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in url)
    if len(url) > 300:
        url = url[:300] + "…"
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    return urlunsplit(parts)


# ------------------------------------------------------------------ naming failures
def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it: ``__cause__``, ``__context__``, and the
    wrapped exception of requests' and urllib3's errors (``args[0]``, ``reason``)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        first = current.args[0] if current.args else None
        todo += [
            reason if isinstance(reason, BaseException) else None,
            first if isinstance(first, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]


def _first(exc: BaseException, *types: type[BaseException]) -> BaseException | None:
    return next((e for e in cause_chain(exc) if isinstance(e, types)), None)


def _innermost(exc: BaseException) -> BaseException:
    """The last exception of the chain: the one that says what really happened."""
    last = exc
    for last in cause_chain(exc):  # noqa: B007 - the loop variable is the result
        pass
    return last


def _plain(exc: BaseException) -> str:
    """A short text for an exception: its message without urllib3's object reprs."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


def describe_failure(exc: BaseException, timeout: float) -> str:
    """Why a request got no (complete) answer, in a few words, from the types along the
    cause chain of ``exc`` (requests → urllib3 → socket / ssl)."""
    import requests
    from urllib3.exceptions import (
        ConnectTimeoutError,
        NameResolutionError,
        ProtocolError,
        ProxyError,
        ReadTimeoutError,
        ResponseError,
    )
    from urllib3.exceptions import SSLError as Urllib3SSLError

    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return f"invalid URL ({_plain(exc)})"
    if isinstance(exc, requests.exceptions.MissingSchema):
        return "the URL needs http:// or https://"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "too many redirects"
    if _first(exc, requests.exceptions.ProxyError, ProxyError) is not None:
        inner = _innermost(exc)
        return f"the proxy could not be used ({type(inner).__name__}: {_plain(inner)})"
    if _first(exc, NameResolutionError, socket.gaierror) is not None:
        return "the host name could not be resolved (DNS): check the URL"
    if _first(exc, ConnectionRefusedError) is not None:
        return "connection refused: is the server running, and is the port right?"
    if _first(exc, ConnectTimeoutError, requests.exceptions.ConnectTimeout) is not None:
        return f"could not connect within {timeout:g} s"
    if _first(exc, ReadTimeoutError, requests.exceptions.ReadTimeout, TimeoutError) is not None:
        return f"no answer within {timeout:g} s (raise it with --timeout)"
    if _first(exc, ssl.SSLError, Urllib3SSLError, requests.exceptions.SSLError) is not None:
        inner = _first(exc, ssl.SSLError) or _innermost(exc)
        return f"TLS error ({_plain(inner)})"
    if _first(exc, ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ProtocolError) is not None:
        return "the server closed the connection"
    if _first(exc, ResponseError) is not None:
        return "the server kept answering with errors (retries exhausted)"
    inner = _innermost(exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection failed ({type(inner).__name__}: {_plain(inner)})"
    return f"{type(exc).__name__}: {_plain(inner)}"


# ------------------------------------------------------------------ the requests.Session
def _make_retry(**kwargs: Any) -> Any:
    """urllib3's Retry, except that a Retry-After longer than RETRY_AFTER_MAX ends the retries
    (an hour's wait would block the kernel): the answer is returned as it is."""
    from urllib3.exceptions import MaxRetryError, ResponseError
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        def increment(
            self,
            method: str | None = None,
            url: str | None = None,
            response: Any = None,
            error: Exception | None = None,
            _pool: Any = None,
            _stacktrace: Any = None,
        ) -> Self:
            if response is not None:
                wait = self.get_retry_after(response)
                if wait is not None and wait > RETRY_AFTER_MAX:
                    raise MaxRetryError(_pool, url, ResponseError(f"Retry-After {wait:g} s"))
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return _Retry(**kwargs)


def _build_http(profile: Profile) -> requests.Session:
    """A requests.Session that never hands a credential to another origin.

    requests strips ``Authorization`` on redirects to another host, but not a custom
    header such as ``X-API-Key``, and it re-applies ``.netrc`` credentials after a
    redirect. Here every redirect drops the profile's header unless the new URL
    is the profile's own origin, and ``.netrc`` is never consulted (every request
    carries an explicit auth object, which also keeps ``.netrc`` out of the first hop).
    Proxies and CA bundles from the environment still apply (``trust_env``).
    """
    import requests
    from requests.adapters import HTTPAdapter

    header = profile.header

    class _Session(requests.Session):
        def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
            url = prepared_request.url or ""
            headers = prepared_request.headers
            if not profile.owns(url):
                headers.pop(header, None)
                old = origin_of(response.request.url or "")
                if old is None or old != origin_of(url):
                    headers.pop("Authorization", None)
                    headers.pop("Proxy-Authorization", None)

    http = _Session()
    http.headers["User-Agent"] = USER_AGENT
    retry_kwargs: dict[str, Any] = dict(
        total=2,
        connect=0,
        read=0,
        redirect=None,
        status=2,
        other=0,
        allowed_methods=IDEMPOTENT,
        status_forcelist=(429, 503),
        backoff_factor=0.5,
        backoff_max=10,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    adapter = HTTPAdapter(max_retries=_make_retry(**retry_kwargs))
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


class NoAuth:
    """An auth object that adds nothing: its presence keeps requests from reading .netrc."""

    def __call__(self, request: Any) -> Any:
        return request


class TokenAuth:
    """Adds the token header to a *prepared* request, and only if that request's URL — as
    requests will send it — belongs to the profile's origin. (Also keeps .netrc out.)"""

    def __init__(self, profile: Profile, name: str, value: str) -> None:
        self.profile = profile
        self.name = name
        self.value = value

    def __call__(self, request: Any) -> Any:
        if self.profile.owns(request.url or ""):
            request.headers[self.name] = self.value
        return request

    def __repr__(self) -> str:
        return f"<token for {self.profile.origin_text}>"


def carried(resp: requests.Response, name: str, value: str) -> bool:
    """Whether the request that got ``resp`` (the last hop of redirects) carried our token."""
    req = resp.request
    return req is not None and req.headers.get(name) == value


def scrub(resp: requests.Response, name: str, value: str) -> None:
    """Hide the token in the requests kept by ``resp`` (``result.response.request.headers``)."""
    scheme = value.split(" ", 1)[0] + " " if " " in value else ""
    for hop in (*resp.history, resp):
        req = hop.request
        if req is not None and req.headers.get(name) == value:
            req.headers[name] = f"{scheme}●●●●●●"


# ------------------------------------------------------------------ the transport
class Transport:
    """Sends the requests of one profile; every failure is a one-line RequestFailed."""

    def __init__(self, profile: Profile, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.profile = profile
        self.timeout = timeout
        self._http: requests.Session | None = None

    @property
    def http(self) -> requests.Session:
        if self._http is None:
            self._http = _build_http(self.profile)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        json_body: Any = None,
        timeout: float | None = None,
        stream: bool = False,
        auth: Any = None,
        secrets: tuple[str | None, ...] = (),
    ) -> requests.Response:
        """Send one request (redirects followed); every failure is a one-line RequestFailed.

        ``secrets`` are hidden in every message. Nothing but RequestFailed and
        Interrupted leaves: the frames below hold the headers.
        """
        problem = url_problem(url)
        if problem:
            raise RequestFailed(f"{method} {safe_url(url)}: not sent: {problem}")
        limit = timeout or self.timeout
        with shield(f"{method} {safe_url(url)}", RequestFailed, *secrets):
            try:
                return self.http.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    json=json_body,
                    timeout=limit,
                    auth=auth or NoAuth(),
                    allow_redirects=True,
                    stream=stream,
                )
            except (KeyboardInterrupt, SessionMagicsError):
                raise
            except Exception as exc:
                import requests

                if not isinstance(exc, requests.RequestException | OSError):
                    raise
                reason = redact_message(describe_failure(exc, limit), *secrets)
                raise RequestFailed(f"{method} {safe_url(url)}: {reason}") from None
