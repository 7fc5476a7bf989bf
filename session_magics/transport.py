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

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from .errors import Interrupted, RequestFailed, SessionMagicsError
from .profile import Profile, format_origin, is_loopback, origin_of, url_problem
from .redact import drop_frames, redact_message

if TYPE_CHECKING:
    import requests

DEFAULT_TIMEOUT = 30.0
RETRY_AFTER_MAX = 10.0  # a longer Retry-After is not waited for: the answer is shown at once
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
USER_AGENT = "session-magics/0.1"
DEFAULT_MAX_BODY = 100 * 1024 * 1024  # bytes of one answer kept in memory
REDIRECT_BODY_MAX = 64 * 1024  # a redirect's own body is read this far, then the connection dropped
CHUNK = 64 * 1024
# Headers that the transport sets itself: written by hand they would make the request's
# framing ambiguous (Content-Length with Transfer-Encoding: request smuggling) or send
# the token with a Host that is not the profile's.
FORBIDDEN_HEADERS = {
    "host": "the host comes from the URL (write the host you mean in the URL)",
    "content-length": "it is set from the body",
    "transfer-encoding": "it is set from the body",
}


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
        return f"no complete answer within {timeout:g} s (raise it with --timeout)"
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


# ------------------------------------------------------------------ the total deadline
class DeadlinePassed(Exception):
    """Raised inside the transport when a request's total time is up."""


class Deadline:
    """The end of one request's time: connect, headers, body, redirects and retries.

    A per-read socket timeout does not bound a request: a server that sends one byte
    a second never lets it expire. So the sockets a request uses are registered here,
    and when the time is up the :class:`_Watchdog` shuts them down; whatever was
    blocked on them returns at once, and :attr:`fired` says why.
    """

    def __init__(self, seconds: float) -> None:
        import time

        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.fired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        import time

        return self.end - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the time is up (at once if it is up already)."""
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            if self.fired:
                _shut(sock)
            elif not any(s is sock for s in self._sockets):
                self._sockets.append(sock)

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        """The request is over: its sockets (maybe back in the pool) are left alone."""
        with self._lock:
            self._done = True
            self._sockets.clear()

    @property
    def done(self) -> bool:
        return self._done


def _shut(sock: socket.socket) -> None:
    """Shut a socket down under whatever reads or writes it (TLS too: the plain socket
    under the TLS layer is shut, so a blocked TLS read returns instead of crashing)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One thread that fires the deadlines that pass (a timer thread per request costs more).

    Finished deadlines stay in the heap until their time comes and are skipped then; the
    thread is woken only when a new deadline is the earliest, and ends when idle.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._count = 0

    def add(self, deadline: Deadline) -> None:
        import heapq

        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (deadline.end, self._count, deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="session-magics deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        import heapq
        import time

        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(30.0)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                end, _, deadline = self._heap[0]
                wait = end - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.fire()


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()


def current_deadline() -> Deadline | None:
    """The deadline of the request this thread is sending, if any."""
    return getattr(_CURRENT, "deadline", None)


@contextmanager
def deadline_of(seconds: float) -> Iterator[Deadline]:
    deadline = Deadline(seconds)
    outer = current_deadline()
    _CURRENT.deadline = deadline
    _WATCHDOG.add(deadline)
    try:
        yield deadline
    finally:
        deadline.finish()
        _CURRENT.deadline = outer


def _watched_connections() -> tuple[type, type]:
    """urllib3 connection classes that register their socket with the current deadline."""
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class _WatchedHTTP(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline = current_deadline()
            if deadline is not None:
                deadline.watch(self.sock)

        def request(self, *args: Any, **kwargs: Any) -> None:
            deadline = current_deadline()
            if deadline is not None:
                deadline.watch(self.sock)
            super().request(*args, **kwargs)

    class _WatchedHTTPS(_WatchedHTTP, HTTPSConnection):
        """The same over TLS: ``super()`` in _WatchedHTTP's methods is HTTPSConnection's."""

    return _WatchedHTTP, _WatchedHTTPS


# ------------------------------------------------------------------ the requests.Session
def _make_retry(**kwargs: Any) -> Any:
    """urllib3's Retry, except that a wait (Retry-After, or the back-off) longer than
    RETRY_AFTER_MAX, or past the request's deadline, ends the retries (an hour's wait
    would block the kernel): the answer is returned as it is."""
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
            wait = self.get_retry_after(response) if response is not None else None
            if wait is not None and wait > RETRY_AFTER_MAX:
                raise MaxRetryError(_pool, url, ResponseError(f"Retry-After {wait:g} s"))
            new = super().increment(method, url, response, error, _pool, _stacktrace)
            deadline = current_deadline()
            if deadline is not None and response is not None:
                if wait is None:
                    wait = new.get_backoff_time()
                if wait >= deadline.remaining():
                    raise MaxRetryError(_pool, url, ResponseError("no time left for a retry"))
            return new

        def sleep_for_retry(self, response: Any) -> bool:
            # Pages fetched at once share one back-off: every thread of the walk waits.
            from .backoff import current

            shared = current()
            wait = self.get_retry_after(response) if shared is not None else None
            if shared is None or wait is None:
                return bool(super().sleep_for_retry(response))
            shared.hold(wait)
            deadline = current_deadline()  # another thread's longer hold: not past this request's time
            shared.wait(None if deadline is None else deadline.remaining())
            return True

    return _Retry(**kwargs)


#: The environment variables that requests' per-request settings depend on, for http and
#: https URLs on a platform whose proxies come from the environment only (Linux and other
#: POSIX systems but macOS): the proxies (lower and upper case, as urllib reads them; an
#: ``all_proxy`` applies to every scheme), the hosts that bypass them, the CGI marker that
#: makes urllib ignore ``HTTP_PROXY``, and the CA bundle variables that set ``verify``.
ENVIRONMENT_SETTINGS = (
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY", "REQUEST_METHOD", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)  # fmt: skip
_CACHED_SETTINGS_MAX = 64


class _EnvironmentSettings:
    """requests' ``merge_environment_settings`` (proxies from the environment, the hosts
    that bypass them, the CA bundle), computed once per origin and reused while the
    variables it depends on keep their values.

    requests looks them up on every request: ``urllib.request.getproxies()`` walks the
    whole environment twice (for the proxies, then for ``no_proxy``), which costs more
    than the rest of a small local request's preparation. Here the key is the request's
    scheme and host:port, the settings passed in, and the values of
    :data:`ENVIRONMENT_SETTINGS` — reading those few variables is cheap, so a change
    between cells (``os.environ["NO_PROXY"] = ...``) is seen by the next request. On
    macOS and Windows, where urllib also reads the system's proxy settings (which could
    change without any variable changing), nothing is cached.

    Kept for the benchmark table's per-request rows (``benchmarks/variants.py``): without
    it the core (row core) takes 1.14× as long and ``%%api -q`` (row api_q, and its
    ratio to the hand-written cell) 1.10×.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], Any] = {}

    def merge(self, http: Any, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        import urllib.request

        import requests

        compute = requests.Session.merge_environment_settings
        if not http.trust_env or urllib.request.getproxies is not urllib.request.getproxies_environment:
            return compute(http, url, proxies, stream, verify, cert)
        import os
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            where = (parts.scheme.lower(), parts.netloc.lower())
            key = (
                where,
                tuple(sorted(proxies.items())) if proxies else (),
                tuple(sorted(http.proxies.items())) if http.proxies else (),
                stream, http.stream, repr(verify), repr(http.verify), repr(cert), repr(http.cert),
                tuple(map(os.environ.get, ENVIRONMENT_SETTINGS)),
            )  # fmt: skip
            hash(key)
        except (TypeError, ValueError):  # something unusual: no caching
            return compute(http, url, proxies, stream, verify, cert)
        found = self._cache.get(key)
        if found is None:
            found = compute(http, url, proxies, stream, verify, cert)
            if len(self._cache) >= _CACHED_SETTINGS_MAX:
                self._cache.clear()
            self._cache[key] = found
        return {**found, "proxies": dict(found["proxies"])}  # callers may change what they get


def _build_http(profile: Profile) -> requests.Session:
    """A requests.Session that never hands a credential to another origin.

    requests strips ``Authorization`` on redirects to another host, but not a custom
    header such as ``X-API-Key``, and it re-applies ``.netrc`` credentials after a
    redirect. Here every redirect drops the profile's header unless the new URL
    is the profile's own origin, and ``.netrc`` is never consulted (every request
    carries an explicit auth object, which also keeps ``.netrc`` out of the first hop).
    CA bundles from the environment still apply (``trust_env``), and so do proxies —
    except for a host on this machine, which is reached directly: a proxy is another
    party, and it would see every credential sent to a local plain-http API.

    Every hop (the request and each redirect) gets what is left of the request's
    deadline as its timeout, and its sockets are watched by that deadline.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    header = profile.header
    watched_http, watched_https = _watched_connections()

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = watched_http

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = watched_https

    pools = {"http": _HTTPPool, "https": _HTTPSPool}

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = pools
            return manager

    class _Session(requests.Session):
        _environment = _EnvironmentSettings()

        def merge_environment_settings(self, url: Any, *settings: Any) -> Any:
            return self._environment.merge(self, url, *settings)

        def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
            url = prepared_request.url or ""
            headers = prepared_request.headers
            if not profile.owns(url):
                headers.pop(header, None)
                old = origin_of(response.request.url or "")
                if old is None or old != origin_of(url):
                    headers.pop("Authorization", None)
                    headers.pop("Proxy-Authorization", None)

        def send(self, request: Any, **kwargs: Any) -> Any:
            deadline = current_deadline()
            if deadline is not None:
                left = deadline.remaining()
                if left <= 0 or deadline.fired:
                    raise DeadlinePassed()
                kwargs["timeout"] = left
            where = origin_of(request.url or "")
            if where is not None and is_loopback(where[1]):
                kwargs["proxies"] = {}  # this machine: never through a proxy
                request.headers.pop("Proxy-Authorization", None)
            return super().send(request, **kwargs)

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
    adapter = _Adapter(max_retries=_make_retry(**retry_kwargs))
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
@dataclass
class Download:
    """``--save FILE``: where a successful answer's body goes, and what was written."""

    path: str
    saved_to: str | None = None
    size: int = 0


def _size(n: int) -> str:
    from .result import human_size

    return human_size(n)


def check_headers(headers: Any) -> str | None:
    """Why the request's own headers cannot be sent, or None (see FORBIDDEN_HEADERS)."""
    items = headers.items() if hasattr(headers, "items") else headers or ()
    for name, _ in items:
        reason = FORBIDDEN_HEADERS.get(str(name).strip().lower())
        if reason is not None:
            return f"a {name} header cannot be written by hand: {reason}"
    return None


def check_timeout(timeout: float) -> None:
    import math

    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise RequestFailed(f"the timeout must be a positive number of seconds, not {timeout!r}")


class Transport:
    """Sends the requests of one profile; every failure is a one-line RequestFailed.

    ``timeout`` is a total deadline for a request (connect, headers, body, redirects,
    retries); ``max_body`` bounds an answer's body kept in memory.
    """

    def __init__(
        self, profile: Profile, *, timeout: float = DEFAULT_TIMEOUT, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        self.profile = profile
        self.timeout = timeout
        self.max_body = max_body
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
        auth: Any = None,
        secrets: tuple[str | None, ...] = (),
        credentials: bool = False,
        max_body: int | None = None,
        download: Download | None = None,
    ) -> requests.Response:
        """Send one request (redirects followed) and read its answer, all within ``timeout``.

        The body is read here: into memory up to ``max_body`` bytes, or — when
        ``download`` is given and the answer is a success — into that file. A
        ``credentials`` request (a password or refresh token in its body) follows no
        redirect to another origin. ``secrets`` are hidden in every message. Nothing
        but RequestFailed, another SessionMagicsError and Interrupted leaves: the frames
        below hold the headers.
        """
        where = f"{method} {safe_url(url)}"
        problem = url_problem(url) or check_headers(headers)
        if problem:
            raise RequestFailed(f"{where}: not sent: {problem}")
        limit = self.timeout if timeout is None else timeout
        check_timeout(limit)
        most = self.max_body if max_body is None else max_body
        got_answer = False
        with shield(where, RequestFailed, *secrets), deadline_of(limit) as deadline:
            try:
                resp = self.http.request(
                    method,
                    url,
                    headers=headers or None,  # (an empty dict costs requests a merge)
                    data=data,
                    json=json_body,
                    timeout=limit,
                    auth=auth or NoAuth(),
                    allow_redirects=True,
                    stream=True,  # the body is read below, bounded
                    hooks={"response": self._hop_hook(url, credentials)},
                )
                got_answer = True
                try:
                    if download is not None and resp.ok:
                        _save_body(resp, download, where)
                    else:
                        _read_body(resp, most, where)
                    if deadline.fired:
                        raise DeadlinePassed()
                except BaseException:
                    resp.close()
                    raise
                return resp
            except (KeyboardInterrupt, SessionMagicsError):
                raise
            except Exception as exc:
                import requests

                if deadline.fired or isinstance(exc, DeadlinePassed):
                    reason = f"no complete answer within {limit:g} s (raise it with --timeout)"
                elif isinstance(exc, requests.RequestException | OSError):
                    reason = describe_failure(exc, limit)
                else:
                    raise
                if download is not None and got_answer:
                    reason += f"; nothing was saved to {download.path}"
                raise RequestFailed(f"{where}: {redact_message(reason, *secrets)}") from None

    def _hop_hook(self, first_url: str, credentials: bool) -> Callable[..., Any]:
        """Looks at every answer before requests follows it: a redirect's body is read a
        little only (it is never shown), and a credential request is not re-sent to
        another origin (307 and 308 re-send the body) or from https to http."""
        start = origin_of(first_url)

        def hook(resp: Any, **kwargs: Any) -> Any:
            if not resp.is_redirect:
                return resp
            if credentials:
                from urllib.parse import urljoin

                target = urljoin(resp.url, resp.headers.get("Location", ""))
                if origin_of(target) != start:
                    resp.close()
                    shown = format_origin(start) if start else "?"
                    raise RequestFailed(
                        f"POST {safe_url(first_url)}: the server redirected the credentials to "
                        f"{safe_url(target)}, away from {shown}: not followed (credentials go to the "
                        "login endpoint's own origin only; give the final URL with --login)"
                    )
            _read_redirect_body(resp)
            return resp

        return hook


def _read_body(resp: Any, most: int, where: str) -> None:
    """Read the answer's body into memory, never more than ``most`` bytes."""
    import io

    length = resp.headers.get("Content-Length", "")
    bodiless = resp.status_code in (204, 304) or (resp.request is not None and resp.request.method == "HEAD")
    if length.isdigit() and int(length) > most and not bodiless:  # HEAD: the length of a GET's body
        raise RequestFailed(_too_large(where, most, f"it announces {_size(int(length))}"))
    buf = io.BytesIO()
    for chunk in resp.iter_content(CHUNK):
        buf.write(chunk)
        if buf.tell() > most:
            raise RequestFailed(_too_large(where, most, "reading stopped there"))
    # requests keeps a read body here; Response.content returns it from now on.
    resp._content = buf.getvalue()
    resp._content_consumed = True


def _too_large(where: str, most: int, detail: str) -> str:
    return (
        f"{where}: the answer is larger than {_size(most)} ({detail}): write it to a file with "
        "--save FILE, or raise the limit with --max-body / SessionMagics.max_body"
    )


def _read_redirect_body(resp: Any) -> None:
    """A redirect's body, read up to REDIRECT_BODY_MAX; beyond that the connection is dropped."""
    body = resp.raw.read(REDIRECT_BODY_MAX + 1, decode_content=False) if resp.raw is not None else b""
    if len(body) > REDIRECT_BODY_MAX:
        resp.raw.close()
        body = body[:REDIRECT_BODY_MAX]
    resp._content = body
    resp._content_consumed = True


def _save_body(resp: Any, download: Download, where: str) -> None:
    """Stream the body to ``download.path`` in chunks: to ``FILE.part`` first, renamed when
    complete, so a broken download leaves no half file under the name asked for."""
    import os

    import requests

    target = os.path.abspath(os.path.expanduser(download.path))
    part = target + ".part"
    written = 0
    try:
        with open(part, "wb") as out:
            for chunk in resp.iter_content(CHUNK):
                out.write(chunk)
                written += len(chunk)
        deadline = current_deadline()
        if deadline is not None and deadline.fired:
            raise DeadlinePassed()
        os.replace(part, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(part)
        deadline = current_deadline()
        if deadline is not None and deadline.fired and isinstance(exc, Exception):
            raise DeadlinePassed() from None  # named by the caller: the time was up
        if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
            raise SessionMagicsError(f"--save {download.path}: {exc.strerror or exc}") from None
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"saving to {download.path}: interrupted after {_size(written)}") from None
        if isinstance(exc, requests.RequestException):
            raise RequestFailed(
                f"{where}: the download broke off after {_size(written)} "
                f"({describe_failure(exc, 0)}); nothing was saved to {download.path}"
            ) from None
        raise
    download.saved_to, download.size = target, written
