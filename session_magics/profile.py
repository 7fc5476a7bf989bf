"""Profiles: one API (base URL, endpoints, how the token is sent) and its user.

A profile's *origin* — scheme, host and port, as browsers define it — is the one
place its token may be sent. :func:`origin_of` and :meth:`Profile.owns` are the
only origin checks in the package.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from .errors import ProfileError
from .tokens import FieldNames
from .trust import LINE, Endpoint, SetBy

if TYPE_CHECKING:
    from .oauth import OAuthSettings

DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _host_key(host: str) -> str:
    """A host name in one comparable form: lower case, no brackets or final dot, IDNA."""
    host = host.strip("[]").lower().rstrip(".")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    return host


@functools.lru_cache(maxsize=512)
def origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, or None.

    Host names are compared case-insensitively; a missing port is the scheme's default.
    The URL is read twice, by the standard library and by urllib3 (whose reading is the
    host that requests connects to); when they disagree — ``http://a:1\\@b:2/`` is host
    ``b`` for one and ``a`` for the other — the URL has no origin: it is ambiguous.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    port = port or DEFAULT_PORTS[scheme]
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        seen = parse_url(url)
    except (LocationParseError, ValueError):
        return None
    if (
        (seen.scheme or "").lower() != scheme
        or _host_key(seen.host or "") != _host_key(parts.hostname)
        or (seen.port or DEFAULT_PORTS[scheme]) != port
    ):
        return None
    host: str | None = parts.hostname.lower().rstrip(".")
    if host is not None and not host.isascii():
        host = _idna_host(host)  # as requests sends it: the token is attached by this name
    if host is None:
        return None
    return scheme, host, port


def _idna_host(host: str) -> str | None:
    """An internationalised host name in the ASCII form requests sends (IDNA 2008, UTS 46)."""
    import idna

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


@functools.lru_cache(maxsize=512)
def url_problem(url: str) -> str | None:
    """Why ``url`` must not be requested at all, or None.

    Refused: spaces and control characters (a URL built with ``{{...}}`` may hold a
    line break, and parsers disagree about what they mean), a user name or password
    before ``@`` (it would stay in the notebook and its history, and ``@`` tricks make
    the host ambiguous), and http(s) URLs whose host and port cannot be read one way.
    """
    if _UNSAFE_CHARS.search(url):
        return "the URL contains spaces or control characters (percent-encode them, e.g. %20)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the URL is not valid (check the host name and port)"
    if "@" in parts.netloc:
        return (
            "the URL holds a user name or password (before '@'); credentials in URLs stay in "
            "the notebook and its history: send them in a header instead"
        )
    if parts.scheme.lower() in DEFAULT_PORTS and origin_of(url) is None:
        return "the URL's host and port cannot be read unambiguously (check the host name and port)"
    return None


def format_origin(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    if DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_base_url(url: str) -> str:
    """Check a base URL and give it a trailing slash (so relative paths join under it)."""
    url = url.strip()
    if not _ABSOLUTE.match(url):
        raise ProfileError(
            f"{url!r} is not an absolute URL: give the API's base URL, e.g. %login https://api.example.com/v1"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ProfileError(f"{url!r} is not a valid URL (check the host name and port)") from None
    if parts.scheme.lower() not in DEFAULT_PORTS:
        raise ProfileError(f"{url!r}: only http:// and https:// URLs are supported")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ProfileError(f"{url!r} is not a valid URL (it contains spaces or control characters)")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ProfileError(
            "the base URL must not contain a user name or password "
            "(credentials in URLs end up in history and logs); use --user instead"
        )
    if origin_of(url) is None:
        raise ProfileError(f"{url!r} is not a valid URL (check the host name and port)")
    if parts.query or parts.fragment:
        raise ProfileError(f"{url!r}: a base URL takes no query string or fragment")
    if not url.endswith("/"):
        url += "/"
    return url


@dataclass
class Profile:
    """Everything session-magics knows about one API, none of it secret."""

    name: str
    base_url: str
    user: str | None = None
    login: str = "auth/token"  # a path relative to base_url or an absolute URL
    refresh: str | None = None  # None: the login endpoint (OAuth2 style)
    revoke: str | None = None
    body: str = "auto"  # how credentials are posted: form | json | auto
    scheme: str | None = None  # None: the token_type the server gave (usually Bearer)
    header: str = "Authorization"
    token_mode: bool = False  # a pasted token / API key instead of username + password
    fields: FieldNames = field(default_factory=FieldNames)
    expired_statuses: frozenset[int] = frozenset({401})
    allow_http: bool = False
    use_keyring: bool = True
    # Names (never values) of environment variables holding the secret, for scheduled runs.
    password_env: str | None = None
    token_env: str | None = None
    # OAuth 2.0 / OpenID Connect (--oauth): the issuer, client and flow; None: the login above.
    oauth: OAuthSettings | None = None
    # Who named each credential endpoint ("login", "refresh", "revoke"; OAuth: "issuer",
    # "token_url", "device_url", "authorize_url"): see trust.py. Missing means the %login
    # line or the Python code that made this profile.
    set_by: dict[str, SetBy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_url = normalize_base_url(self.base_url)
        if self.body not in ("form", "json", "auto"):
            raise ProfileError(f"--body must be form or json, not {self.body!r}")
        origin = self.origin
        if origin[0] == "http" and not self.allow_http and not is_loopback(origin[1]):
            raise ProfileError(
                f"{self.base_url} uses plain http: tokens would cross the network unencrypted. "
                "Use https, or pass --allow-http if you accept that risk."
            )

    @property
    def origin(self) -> tuple[str, str, int]:
        origin = origin_of(self.base_url)
        assert origin is not None  # checked in __post_init__
        return origin

    @property
    def origin_text(self) -> str:
        return format_origin(self.origin)

    @property
    def host(self) -> str:
        return self.origin[1]

    def url(self, path_or_url: str) -> str:
        """Resolve a path against the base URL; absolute URLs are returned unchanged.

        ``/users`` and ``users`` both land under the base URL's path, as in REST
        Client's and HTTPie's base-URL handling, which is what people expect from a
        base URL such as ``https://host/api/v1``.
        """
        if _ABSOLUTE.match(path_or_url):
            return path_or_url
        if path_or_url.startswith("//"):
            raise ProfileError(f"{path_or_url!r}: write the scheme, e.g. https:{path_or_url}")
        return urljoin(self.base_url, path_or_url.lstrip("/"))

    def owns(self, url: str) -> bool:
        """Whether the token of this profile may be sent to ``url``."""
        origin = origin_of(url)
        if origin is None or origin != self.origin:
            return False
        if origin[0] == "http" and not self.allow_http and not is_loopback(origin[1]):
            return False
        return True

    def credential_endpoint(self, role: str) -> Endpoint:
        """Where the credentials of ``role`` (login, refresh, revoke) are posted, and who
        said so. refresh falls back to the login endpoint (and to who named that)."""
        if role == "refresh" and self.refresh is None:
            return Endpoint("refresh", self.url(self.login), self.set_by.get("login", LINE))
        path = {"login": self.login, "refresh": self.refresh, "revoke": self.revoke}[role]
        if path is None:
            raise ProfileError(f"no {role} endpoint configured")
        return Endpoint(role, self.url(path), self.set_by.get(role, LINE))

    def credential_endpoints(self) -> list[Endpoint]:
        """Every credential endpoint this profile uses: login and refresh (not for a pasted
        token, which is kept, not posted), and revoke if any."""
        roles = ([] if self.token_mode else ["login", "refresh"]) + (["revoke"] if self.revoke else [])
        return [self.credential_endpoint(role) for role in roles]

    @property
    def keyring_service(self) -> str:
        return f"session-magics {self.origin_text}"

    def describe(self) -> str:
        who = self.user or "?"
        return f"{who} at {self.origin_text}"
