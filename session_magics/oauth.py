"""OAuth 2.0 and OpenID Connect logins, usable without IPython.

Three flows, chosen with ``%login BASE_URL --oauth FLOW --issuer ISSUER --client-id ID``:

* ``device`` — device authorization (RFC 8628): the user opens a link, enters (or
  confirms) a short code and signs in; the kernel polls the token endpoint at the
  server's ``interval``, backs off on ``slow_down``, and stops on ``access_denied``
  or ``expired_token``. No typing into the kernel, no redirect to the kernel.
* ``code`` — authorization code with PKCE S256 (RFC 7636) and a loopback redirect
  (RFC 8252): the kernel listens once on ``127.0.0.1`` for ``/callback``, checks
  ``state`` (and the ID token's ``nonce``), and exchanges the code.
* ``client`` — client credentials: no user and no refresh token; on expiry a new
  token is requested silently, so it works in scheduled runs.

Where each secret goes (the trust model of :mod:`session_magics.trust`): the
**access token** only to the API's origin (the profile's ``base_url``; see
:meth:`Profile.owns`); the **client secret, refresh token, PKCE verifier and device
code** only to the issuer's credential endpoints (token, device authorization,
revocation), each POST passing :meth:`ApiSession._send_credentials` — the single check
the password flow passes too. The issuer, its endpoints and its sign-in page are
credential origins: named on the ``%login`` line or in the user's config file they are
used; named only by a project file on another origin than the API's, they wait for the
user's approval of that origin (nothing, not even discovery, is requested before).
Discovered endpoints stand where the issuer stands, each judged by its own origin: on
another origin than the issuer's, a project-named issuer needs that origin approved
too. Credential requests follow redirects within their origin only. The **ID token**
goes nowhere: its claims give the user's name, and it is dropped. The issuer's
userinfo endpoint is never called.

Endpoints come from discovery: ``/.well-known/openid-configuration`` and RFC 8414's
``/.well-known/oauth-authorization-server``, merged (providers list the device or
revocation endpoint in only one), both checked (their ``issuer`` must be the one
given; every endpoint https, or http on this machine).

Refreshes hold the keyring lock from the re-read of the store to the save of the
new token: two kernels never spend one rotating refresh token.

The protocol pieces are written here, on the package's own HTTP session, rather
than taken from Authlib's requests client: that client brings its own
``requests.Session`` (≈150 ms to import), and every credential request must go
through the one session that enforces the rules above (no redirect elsewhere, no proxy for
loopback, the trust check, secrets redacted from errors). PKCE is two lines of :mod:`hashlib`; the ID
token's claims are read with PyJWT, a dependency already.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LoginError, ProfileError, RequestFailed, SessionExpired, SessionMagicsError
from .session import ApiSession, _server_error
from .tokens import FieldNames, Token
from .transport import redact_message
from .transport import safe_url as _safe_url
from .transport import shield as _shield
from .trust import LINE, ApprovalNeeded, CredentialEndpointRefused, Endpoint, SetBy

if TYPE_CHECKING:
    from .profile import Profile

FLOWS = ("device", "code", "client")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2: when the server names none
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
CALLBACK_PATH = "/callback"
OAUTH_FIELDS = FieldNames(access="access_token", refresh="refresh_token", expires_in="expires_in")
ID_TOKEN_LEEWAY = 120.0  # clock skew accepted when reading the ID token's exp


# ----------------------------------------------------------------------- settings


def _check_endpoint(url: str, what: str, allow_http: bool = False) -> str:
    """An endpoint URL that credentials may be posted to: absolute, https (or http to
    this machine), unambiguous."""
    from .profile import is_loopback, origin_of, url_problem

    problem = url_problem(url)
    origin = origin_of(url)
    if problem or origin is None:
        raise ProfileError(
            f"{what} {_safe_url(url)!r} is not a usable URL{': ' + problem if problem else ''}"
        )
    if origin[0] != "https" and not allow_http and not is_loopback(origin[1]):
        raise ProfileError(
            f"{what} {_safe_url(url)} uses plain http: credentials would cross the network unencrypted. "
            "Use https (or --allow-http if you accept that risk)."
        )
    return url


@dataclass(frozen=True)
class OAuthSettings:
    """How a profile logs in with OAuth (none of it secret: the client secret is named by
    the environment variable that holds it)."""

    flow: str
    issuer: str
    client_id: str
    scope: str | None = None
    client_secret_env: str | None = None
    redirect_port: int | None = None
    redirect_uri: str | None = None
    token_url: str | None = None
    device_url: str | None = None
    authorize_url: str | None = None
    revoke_url: str | None = None
    audience: str | None = None
    resource: str | None = None
    allow_http: bool = False

    def __post_init__(self) -> None:
        if self.flow not in FLOWS:
            raise ProfileError(f"--oauth takes {', '.join(FLOWS)}, not {self.flow!r}")
        if not self.issuer:
            raise ProfileError(
                "--oauth needs --issuer URL (the authorization server, e.g. https://login.example.com)"
            )
        if not self.client_id or any(ch.isspace() for ch in self.client_id):
            raise ProfileError("--oauth needs --client-id ID (the application's client id, without spaces)")
        _check_endpoint(self.issuer, "the issuer", self.allow_http)
        for name in ("token_url", "device_url", "authorize_url", "revoke_url"):
            value = getattr(self, name)
            if value:
                _check_endpoint(
                    value,
                    f"--{name.replace('_url', '-url').replace('revoke-url', 'revoke')}",
                    self.allow_http,
                )
        if self.redirect_port is not None and not 0 <= self.redirect_port <= 65535:
            raise ProfileError("--redirect-port takes a port number (1-65535), or 0 for any free port")
        if self.redirect_uri:
            self.redirect_target()  # checked now, not at the first login

    @property
    def issuer_key(self) -> str:
        return self.issuer.rstrip("/")

    @property
    def secret_service(self) -> str:
        """Where a client secret may wait in the keyring (user name: the client id)."""
        return f"session-magics client {self.issuer_key}"

    def redirect_target(self) -> tuple[str, int, str]:
        """``(host, port, path)`` the loopback listener serves; port 0: any free port."""
        from urllib.parse import urlsplit

        from .profile import is_loopback

        if not self.redirect_uri:
            return "127.0.0.1", self.redirect_port or 0, CALLBACK_PATH
        parts = urlsplit(self.redirect_uri)
        host = parts.hostname or ""
        if parts.scheme != "http" or not is_loopback(host) or parts.query or parts.fragment:
            raise ProfileError(
                f"--redirect-uri {self.redirect_uri!r}: the kernel receives the redirect itself, "
                "so it must be http://127.0.0.1:PORT/PATH (or [::1] / localhost), without a query"
            )
        port = parts.port if parts.port is not None else (self.redirect_port or 0)
        bind = "::1" if host == "::1" else "127.0.0.1"
        return bind, port, parts.path or "/"

    def describe(self) -> str:
        return f"{self.issuer_key} ({self.flow}{', scopes: ' + self.scope if self.scope else ''})"


# ---------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    token: str | None = None
    device: str | None = None
    authorize: str | None = None
    revoke: str | None = None
    auth_methods: tuple[str, ...] = ()
    discovered: tuple[str, ...] = ()  # the documents read


def well_known_urls(issuer: str) -> list[str]:
    """OpenID Connect Discovery (appended to the issuer) and RFC 8414 §3 (inserted
    before the issuer's path)."""
    from urllib.parse import urlsplit, urlunsplit

    base = issuer.rstrip("/")
    parts = urlsplit(base)
    oidc = f"{base}/.well-known/openid-configuration"
    rfc8414 = urlunsplit(parts._replace(path=f"/.well-known/oauth-authorization-server{parts.path}"))
    return [oidc, rfc8414]


def discover(session: ApiSession, settings: OAuthSettings) -> Endpoints:
    """Read both discovery documents, merge them, check them, apply the overrides."""
    merged: dict[str, Any] = {}
    read: list[str] = []
    problems: list[str] = []
    for url in well_known_urls(settings.issuer):
        try:
            resp = session._send("GET", url, headers={"Accept": "application/json"})
        except RequestFailed as exc:
            problems.append(str(exc))
            continue
        if resp.status_code != 200:
            problems.append(f"{_safe_url(url)} answered {resp.status_code}")
            continue
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            problems.append(f"{_safe_url(url)} is not a JSON object")
            continue
        found = doc.get("issuer")
        if not isinstance(found, str) or found.rstrip("/") != settings.issuer_key:
            raise LoginError(
                f"{_safe_url(url)} describes the issuer {found!r}, not {settings.issuer!r}: not used "
                "(the --issuer must be exactly the provider's issuer)"
            )
        for key, value in doc.items():
            merged.setdefault(key, value)
        read.append(url)

    def pick(override: str | None, key: str) -> str | None:
        if override:
            return override
        value = merged.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise LoginError(f"the issuer's {key} is not a URL")
        return _check_endpoint(value, f"the issuer's {key}", settings.allow_http)

    methods = merged.get("token_endpoint_auth_methods_supported")
    endpoints = Endpoints(
        issuer=settings.issuer_key,
        token=pick(settings.token_url, "token_endpoint"),
        device=pick(settings.device_url, "device_authorization_endpoint"),
        authorize=pick(settings.authorize_url, "authorization_endpoint"),
        revoke=pick(settings.revoke_url, "revocation_endpoint"),
        auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else (),
        discovered=tuple(read),
    )
    needed = {"client": ("token",), "device": ("token", "device"), "code": ("token", "authorize")}
    option = {"token": "--token-url", "device": "--device-url", "authorize": "--authorize-url"}
    for name in needed[settings.flow]:
        if getattr(endpoints, name) is None:
            why = "; ".join(problems) if not read else "the discovery documents name none"
            raise LoginError(
                f"no {name} endpoint for {settings.issuer_key} ({why}): give it with {option[name]}"
            )
    return endpoints


# ----------------------------------------------------------------- the session


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (43+ characters of the unreserved set) and its S256 challenge."""
    import base64
    import hashlib

    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthSession(ApiSession):
    """An :class:`ApiSession` whose tokens come from an OAuth 2.0 / OpenID Connect issuer."""

    def __init__(self, profile: Profile, *args: Any, **kwargs: Any) -> None:
        if profile.oauth is None:
            raise ProfileError("an OAuth session needs OAuth settings (--oauth)")
        super().__init__(profile, *args, **kwargs)
        self.settings: OAuthSettings = profile.oauth
        self._endpoints: Endpoints | None = None

    # -- where credentials go (the trust model of session_magics.trust)
    def _set_by(self, key: str) -> SetBy:
        return self.profile.set_by.get(key, LINE)

    def _issuer_endpoint(self) -> Endpoint:
        return Endpoint("issuer", self.settings.issuer, self._set_by("issuer"))

    @property
    def issuer_origin(self) -> tuple[str, str, int] | None:
        from .profile import origin_of

        return origin_of(self.settings.issuer)

    @property
    def discovered(self) -> bool:
        """Whether the discovery documents were read (or found wanting) already."""
        return self._endpoints is not None

    @property
    def endpoints(self) -> Endpoints:
        """The issuer's endpoints. Nothing is requested from an issuer that may not receive
        credentials yet (a project file's issuer on a foreign origin, not approved): the
        trust check comes before the discovery documents are fetched."""
        if self._endpoints is None:
            self.trust.require(self._issuer_endpoint())
            with _shield(f"reading the discovery documents of {self.settings.issuer_key}", LoginError):
                self._endpoints = discover(self, self.settings)
        return self._endpoints

    _ROLES = {"token": "token_url", "device": "device_url", "authorize": "authorize_url", "revoke": "revoke"}

    def credential_endpoint(self, role: str) -> Endpoint:
        """``issuer``, ``token``, ``device``, ``authorize`` or ``revoke``, and who named it.

        An endpoint given as an option or profile key was named by whoever gave it; one
        from discovery stands where the issuer stands (named by whoever named the issuer).
        :func:`session_magics.trust.check` then judges each by its own origin, so a
        discovered endpoint on another origin than the issuer's needs that origin to be
        accepted in its own right (a project's issuer: approved) — a discovery document
        cannot move credentials to an origin nobody approved."""
        if role == "issuer":
            return self._issuer_endpoint()
        key = self._ROLES.get(role)
        if key is None:
            raise ProfileError(f"an OAuth login has no {role} endpoint")
        url = getattr(self.endpoints, role)
        if url is None:
            raise LoginError(f"{self.settings.issuer_key} has no {role} endpoint")
        named = getattr(self.settings, "revoke_url" if role == "revoke" else key)
        return Endpoint(role, url, self._set_by(key) if named else self._set_by("issuer"))

    def _roles(self) -> tuple[str, ...]:
        flow = self.settings.flow
        person = {"device": ("device",), "code": ("authorize",)}.get(flow, ())
        return ("token", *person, "revoke")

    def credential_endpoints(self) -> list[Endpoint]:
        """The issuer and the endpoints this flow uses. Before discovery (which waits for
        the issuer's approval) only those known without it: the issuer and the overrides."""
        found = [self._issuer_endpoint()]
        for role in self._roles():
            if self._endpoints is not None:
                url = getattr(self._endpoints, role)
                if url:
                    found.append(self.credential_endpoint(role))
                continue
            named = getattr(self.settings, "revoke_url" if role == "revoke" else self._ROLES[role])
            if named:
                found.append(Endpoint(role, named, self._set_by(self._ROLES[role])))
        return found

    def _json_credentials(self) -> bool:
        return False  # OAuth token, device and revocation requests are forms (RFC 6749)

    def _client_secret(self) -> str | None:
        """The client secret: from ``$VAR`` (--client-secret-env), else from the keyring entry
        ``session-magics client ISSUER`` / CLIENT_ID. None for a public client (neither named
        nor stored; the keyring is asked only for client credentials or when $VAR is unset)."""
        from .redact import take_from_environment

        var = self.settings.client_secret_env
        # Read once, then removed from the environment and kept in memory (like --password-env).
        kept = take_from_environment(var) if var else None
        if kept is not None:
            return kept.reveal()
        if not var and self.settings.flow != "client":
            return None
        reader = getattr(self.store, "secret", None)
        stored = reader(self.settings.secret_service, self.settings.client_id) if reader else None
        if stored:
            return str(stored)
        where = f"${var} is not set" if var else "no client secret was given"
        raise LoginError(
            f"{where}: --oauth {self.settings.flow} with client {self.settings.client_id!r} needs its "
            "secret. Name the environment variable holding it with --client-secret-env VAR, or keep it "
            f"in the keyring: keyring set '{self.settings.secret_service}' {self.settings.client_id}"
        )

    def _post(
        self, role: str, payload: dict[str, str], *, secrets: tuple[str | None, ...] = ()
    ) -> tuple[int, Any]:
        """POST a credential request to the issuer's ``role`` endpoint (token, device,
        revoke); (status, JSON or None). It goes through :meth:`_send_credentials`, the
        single trust check every credential passes.

        The client authenticates with HTTP Basic (RFC 6749 §2.3.1) unless the issuer
        lists only ``client_secret_post``; a public client sends its ``client_id``.
        Redirects are followed within the endpoint's origin only (307/308 re-send the body).
        """
        import base64
        from urllib.parse import quote

        self.trust.require(self.credential_endpoint(role))  # before the secret is even read
        secret = self._client_secret()
        headers: dict[str, str] = {}
        body = dict(payload)
        basic = None
        if secret is None:
            body["client_id"] = self.settings.client_id
        else:
            methods = self.endpoints.auth_methods
            if methods and "client_secret_basic" not in methods and "client_secret_post" in methods:
                body.update(client_id=self.settings.client_id, client_secret=secret)
            else:
                pair = f"{quote(self.settings.client_id, safe='')}:{quote(secret, safe='')}"
                basic = base64.b64encode(pair.encode()).decode("ascii")
                headers["Authorization"] = "Basic " + basic
        hidden = (*secrets, secret, basic)  # a server may echo the header back
        resp = self._send_credentials(role, body, hidden, headers=headers)
        url = resp.url or self.credential_endpoint(role).url
        if 300 <= resp.status_code < 400:
            resp.close()
            raise LoginError(
                f"{_safe_url(url)} answered a redirect ({resp.status_code}) without a target; "
                "credentials are not sent on. Is the endpoint right?"
            )
        try:
            data = resp.json()
        except (ValueError, RecursionError):
            data = None
        if resp.status_code >= 400:
            if not isinstance(data, dict):
                raise LoginError(redact_message(_server_error(resp, data), *hidden))
            raise OAuthError.from_answer(resp.status_code, data, hidden)
        return resp.status_code, data

    def _token_request(
        self,
        payload: dict[str, str],
        *,
        secrets: tuple[str | None, ...] = (),
        previous: Token | None = None,
        nonce: str | None = None,
        user: str | None = None,
    ) -> Token:
        _, data = self._post("token", payload, secrets=secrets)
        return self._token_from(data, previous=previous, nonce=nonce, user=user)

    def _token_from(self, data: Any, *, previous: Token | None, nonce: str | None, user: str | None) -> Token:
        from .tokens import parse_token_response

        # access_token by name: an ID token is never taken for the access token.
        token = parse_token_response(data, fields=OAUTH_FIELDS, previous=previous)
        scope = data.get("scope") if isinstance(data.get("scope"), str) else None
        name = user
        id_token = data.get("id_token")
        if isinstance(id_token, str) and id_token:
            claims = self._id_token_claims(id_token, nonce)
            name = next(
                (
                    claims[k]
                    for k in ("preferred_username", "email", "name", "sub")
                    if isinstance(claims.get(k), str)
                ),
                name,
            )
        if name is None and previous is not None:
            name = previous.user
        return token.replace(
            user=name or self.profile.user or self.settings.client_id,
            scope=scope or (previous.scope if previous else None) or self.settings.scope,
            issuer=self.settings.issuer_key,
        )

    def _id_token_claims(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """The ID token's claims, after the checks that matter for a token received straight
        from the token endpoint (OpenID Connect Core §3.1.3.7: TLS stands in for the
        signature there): issuer, audience, expiry and the nonce we sent."""
        import jwt

        try:
            claims = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise LoginError("the issuer answered an ID token that is not a JWT") from None
        if str(claims.get("iss", "")).rstrip("/") != self.settings.issuer_key:
            raise LoginError("the ID token was issued by another issuer: login refused")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.settings.client_id not in audiences:
            raise LoginError("the ID token is meant for another client: login refused")
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp + ID_TOKEN_LEEWAY < time.time():
            raise LoginError("the ID token has expired: login refused (is this machine's clock right?)")
        if nonce is not None and not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise LoginError("the ID token's nonce is not the one sent: login refused")
        return claims

    def _extra_params(self) -> dict[str, str]:
        extra = {}
        if self.settings.audience:
            extra["audience"] = self.settings.audience
        if self.settings.resource:
            extra["resource"] = self.settings.resource
        return extra

    def _scope_params(self) -> dict[str, str]:
        return {"scope": self.settings.scope} if self.settings.scope else {}

    # -- tokens of this issuer only
    @property
    def token(self) -> Token | None:
        token = super().token
        if token is not None and token.issuer != self.settings.issuer_key:
            return None  # another login's token (another issuer, or not OAuth): not ours to use
        return token

    def _stored_newer_than(self, current: Token | None) -> Token | None:
        stored = super()._stored_newer_than(current)
        if stored is not None and stored.issuer != self.settings.issuer_key:
            return None
        return stored

    # -- the flows
    def login_client(self) -> Token:
        """Client credentials: a token for the client itself, no person involved."""
        with _shield(f"getting a token from {self.settings.issuer_key}", LoginError):
            token = self._token_request(
                {"grant_type": "client_credentials", **self._scope_params(), **self._extra_params()},
                user=self.settings.client_id,
            )
            self.profile.user = self.profile.user or token.user
            return self._remember(token)

    def device_login(self) -> DeviceLogin:
        return DeviceLogin(self)

    def code_login(self) -> CodeLogin:
        return CodeLogin(self)

    def renewable(self, token: Token) -> bool:
        """With a refresh token, or for the client flow (a new client-credentials request)."""
        return bool(token.refresh_token) or self.settings.flow == "client"

    def refresh(self, stale: Token | None = None) -> Token | None:
        """A new token: with the refresh token (rotation-safe across kernels), or for the
        client flow a new client-credentials request. None when a person must log in."""
        with self._lock:
            current = self.token
            if current is None and self.settings.flow != "client":
                return None
            if stale is not None and current is not None and current.access_token != stale.access_token:
                return current  # renewed meanwhile by another thread
            if self.settings.flow != "client" and not (current and current.refresh_token):
                return None
            self.trust.require(self.credential_endpoint("token"))  # before any wait
            with self.store.locked("refresh a token"):
                # Another kernel may have renewed it (and spent the refresh token) meanwhile.
                stored = self._stored_newer_than(current)
                if stored is not None and not stored.is_expired(self.leeway):
                    self._token = stored
                    return stored
                try:
                    if self.settings.flow == "client":
                        return self.login_client()
                    assert current is not None and current.refresh_token is not None
                    with _shield(
                        "refreshing the token", LoginError, current.refresh_token, current.access_token
                    ):
                        token = self._token_request(
                            {"grant_type": "refresh_token", "refresh_token": current.refresh_token},
                            secrets=(current.refresh_token, current.access_token),
                            previous=current,
                        )
                except OAuthError:
                    return None  # expired or revoked: a person has to log in again
                return self._remember(token)

    def logout(self) -> list[str]:
        """Revoke at the issuer (RFC 7009) when it has a revocation endpoint, then forget.

        The refresh token is revoked when there is one (the issuer then also ends the
        access tokens of that grant, RFC 7009 §2.1); the access token goes back to the
        issuer only when there is no refresh token (client credentials)."""
        notes: list[str] = []
        token = self.token
        if token is not None:
            try:
                revoke = self.endpoints.revoke
            except (ApprovalNeeded, CredentialEndpointRefused) as exc:
                revoke = None
                notes.append(f"the tokens were not revoked: {exc}")
            except (LoginError, RequestFailed) as exc:
                revoke = None
                notes.append(f"could not revoke: {exc}")
            if revoke:
                secret, hint = (
                    (token.refresh_token, "refresh_token")
                    if token.refresh_token
                    else (token.access_token, "access_token")
                )
                try:
                    self._post(
                        "revoke",
                        {"token": secret, "token_type_hint": hint},
                        secrets=(secret, token.access_token),
                    )
                except OAuthError as exc:
                    notes.append(f"the issuer refused to revoke the {hint.replace('_', ' ')}: {exc}")
                except (ApprovalNeeded, CredentialEndpointRefused) as exc:
                    notes.append(f"the tokens were not revoked: {exc}")
                except (LoginError, RequestFailed) as exc:
                    notes.append(f"could not revoke: {exc}")
            elif not notes:
                notes.append(
                    f"{self.settings.issuer_key} has no revocation endpoint: the token was only deleted here"
                )
        self.forget()
        return notes

    def status_note(self) -> str:
        token = self.token
        scope = (token.scope if token else None) or self.settings.scope
        return f" — via {self.settings.issuer_key} ({self.settings.flow}" + (
            f", scopes: {scope})" if scope else ")"
        )


class OAuthError(LoginError):
    """The issuer answered an OAuth error (RFC 6749 §5.2 / RFC 8628 §3.5)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def from_answer(cls, status: int, data: Any, hidden: tuple[str | None, ...] = ()) -> OAuthError:
        code = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else None
        text = data.get("error_description") if isinstance(data, dict) else None
        detail = f"{text} ({code})" if isinstance(text, str) and text else code or "no details"
        return cls(redact_message(f"the issuer answered {status}: {detail}", *hidden), code)


# ------------------------------------------------------------------ logins in progress


@dataclass
class PendingLogin:
    """A login a person has to finish elsewhere (a browser); the kernel waits for it.

    ``run()`` (in a thread, or in the caller's) waits until the token arrives, the
    person refuses, the login expires, or :meth:`cancel` is called. The outcome is in
    ``token`` / ``error`` once ``done`` is set."""

    session: OAuthSession
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    token: Token | None = None
    error: str | None = None
    cancelled: bool = False
    expires_at: float | None = None  # when the issuer stops accepting this login
    _thread: threading.Thread | None = None

    def start_in_thread(self) -> None:
        self._thread = threading.Thread(target=self.run, name="session-magics-oauth", daemon=True)
        self._thread.start()

    def run(self) -> None:
        try:
            token = self._wait_for_token()
            # A poll (or code exchange) already on its way when the wait was abandoned or
            # cancelled may still bring a token: the person has given up, so it is dropped,
            # never stored. (Only the instant between this check and the save is left.)
            if token is not None and not self.stop.is_set():
                self.token = self.session._remember(token)
        except SessionExpired as exc:
            self.error = str(exc)
        except SessionMagicsError as exc:  # LoginError, RequestFailed, ApprovalNeeded...
            self.error = str(exc)
        except Exception as exc:  # a thread's failure must reach the person, without secrets
            self.error = f"the login failed: {type(exc).__name__}"
        finally:
            self.close()
            self.done.set()

    def _wait_for_token(self) -> Token | None:
        raise NotImplementedError

    def cancel(self) -> None:
        """The person gave up (Cancel, Ctrl+C)."""
        if not self.done.is_set():
            self.cancelled = True
        self.abandon()

    def abandon(self) -> None:
        """Stop waiting (the wait ended: a timeout, an error elsewhere); not a cancel."""
        self.stop.set()
        self.close()

    def close(self) -> None:
        """Release what the login holds (the loopback listener)."""

    def wait(self, timeout: float | None) -> bool:
        """Wait for the end (for terminals and scripts); True when it ended in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.done.wait(0.2 if left is None else min(0.2, left))
        return True

    def seconds_left(self) -> float | None:
        return None if self.expires_at is None else max(0.0, self.expires_at - time.time())

    def outcome(self, timeout: float) -> None:
        """Success, or :class:`SessionExpired` saying why not."""
        profile = self.session.profile
        who = profile.describe() if profile.user else profile.origin_text
        if self.token is not None:
            return
        timed_out = not self.done.is_set() and not self.cancelled
        self.abandon()  # stops the polling, closes the listener
        if self.error is not None:
            raise SessionExpired(f"Login failed: {self.error}")
        if timed_out:
            raise SessionExpired(f"No login within {timeout:g} s for {who} (SessionMagics.login_timeout).")
        from .ui import cancelled

        raise cancelled(self.session)


@dataclass
class DeviceLogin(PendingLogin):
    """RFC 8628: ask for a user code, then poll the token endpoint while the person approves."""

    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str | None = None
    interval: float = DEFAULT_INTERVAL
    polls: int = 0
    _device_code: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"<DeviceLogin {self.session.settings.issuer_key} code={self.user_code}>"

    def begin(self) -> DeviceLogin:
        session = self.session
        with _shield(f"starting a device login at {session.settings.issuer_key}", LoginError):
            _, data = session._post("device", {**session._scope_params(), **session._extra_params()})
            if not isinstance(data, dict):
                raise LoginError("the device authorization endpoint did not answer a JSON object")
            code, user_code, uri = (
                data.get("device_code"),
                data.get("user_code"),
                data.get("verification_uri"),
            )
            uri = uri or data.get("verification_url")  # Google's name for it
            if not all(isinstance(v, str) and v for v in (code, user_code, uri)):
                raise LoginError(
                    "the device authorization answer lacks device_code, user_code or verification_uri"
                )
            for link in (uri, data.get("verification_uri_complete")):
                if isinstance(link, str) and not link.lower().startswith(("https://", "http://")):
                    raise LoginError(
                        "the device authorization answer has a verification link that is not http(s)"
                    )
            self._device_code, self.user_code, self.verification_uri = str(code), str(user_code), str(uri)
            complete = data.get("verification_uri_complete")
            self.verification_uri_complete = complete if isinstance(complete, str) and complete else None
            self.interval = _seconds(data.get("interval"), DEFAULT_INTERVAL, low=0.0, high=60.0)
            self.expires_at = time.time() + _seconds(data.get("expires_in"), 600.0, low=1.0, high=3600.0)
        return self

    @property
    def link(self) -> str:
        return self.verification_uri_complete or self.verification_uri

    def _wait_for_token(self) -> Token | None:
        session = self.session
        while True:
            if self.stop.wait(self.interval):
                return None
            if self.expires_at is not None and time.time() > self.expires_at:
                raise LoginError("the code expired before the login was approved: run %login again")
            self.polls += 1
            try:
                with _shield("waiting for the device login", LoginError, self._device_code):
                    return session._token_request(
                        {"grant_type": DEVICE_GRANT, "device_code": self._device_code},
                        secrets=(self._device_code,),
                    )
            except OAuthError as exc:
                if exc.code == "authorization_pending":
                    continue
                if exc.code == "slow_down":
                    self.interval += SLOW_DOWN_STEP
                    continue
                if exc.code == "access_denied":
                    raise LoginError("the login was refused at the provider (access_denied)") from None
                if exc.code == "expired_token":
                    raise LoginError(
                        "the code expired before the login was approved: run %login again"
                    ) from None
                raise


@dataclass
class CodeLogin(PendingLogin):
    """Authorization code + PKCE with a one-shot loopback listener on 127.0.0.1."""

    authorize_url: str = ""
    redirect_uri: str = ""
    _verifier: str = field(default="", repr=False)
    _state: str = field(default="", repr=False)
    _nonce: str | None = field(default=None, repr=False)
    _server: Any = field(default=None, repr=False)
    _path: str = field(default=CALLBACK_PATH, repr=False)
    _callback: dict[str, str] | None = field(default=None, repr=False)
    _got: threading.Event = field(default_factory=threading.Event, repr=False)
    rejected: int = 0  # callbacks refused (wrong state or path)

    def __repr__(self) -> str:
        return f"<CodeLogin {self.session.settings.issuer_key} {self.redirect_uri}>"

    def begin(self) -> CodeLogin:
        from urllib.parse import urlencode, urlsplit, urlunsplit

        session = self.session
        settings = session.settings
        # The sign-in page receives no secret (only the PKCE challenge and state), but it is
        # where the person types a password: a project's choice of it needs approval too.
        authorize = session.trust.require(session.credential_endpoint("authorize"))
        host, port, path = settings.redirect_target()
        self._server = _listen(host, port, self)
        bound = self._server.server_address[1]
        if settings.redirect_uri:
            parts = urlsplit(settings.redirect_uri)
            netloc = parts.netloc if parts.port else f"{parts.netloc}:{bound}"
            self.redirect_uri = urlunsplit(parts._replace(netloc=netloc))
        else:
            self.redirect_uri = f"http://127.0.0.1:{bound}{path}"
        self._path = path
        self._verifier, challenge = pkce_pair()
        self._state = secrets.token_urlsafe(24)
        scopes = (settings.scope or "").split()
        self._nonce = secrets.token_urlsafe(24) if "openid" in scopes else None
        params = {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": self.redirect_uri,
            **session._scope_params(),
            "state": self._state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **({"nonce": self._nonce} if self._nonce else {}),
            **session._extra_params(),
        }
        sep = "&" if urlsplit(authorize).query else "?"
        self.authorize_url = authorize + sep + urlencode(params)
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="session-magics-oauth-callback",
            daemon=True,
        ).start()
        return self

    # called by the listener's thread
    def _receive(self, path: str, query: dict[str, str]) -> tuple[int, str]:
        if path != self._path or not secrets.compare_digest(query.get("state", ""), self._state):
            self.rejected += 1
            return 400, "This is not the answer to the login session-magics is waiting for."
        if self._got.is_set():
            return 400, "This login was already answered."
        self._callback = query
        self._got.set()
        if "error" in query:
            return 200, "The login was not completed. You can close this tab."
        return 200, "Signed in. You can close this tab and return to the notebook."

    def complete(self, redirected_url: str) -> bool:
        """The URL the browser was sent to, pasted by the person (a remote kernel whose
        loopback port the browser cannot reach). False when it is not this login's answer."""
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(redirected_url.strip())
        query = dict(parse_qsl(parts.query))
        status, _ = self._receive(parts.path or "/", query)
        return status == 200

    def _wait_for_token(self) -> Token | None:
        while not self._got.wait(0.1):
            if self.stop.is_set():
                return None
        self.close()
        query = self._callback or {}
        if "error" in query:
            code = query.get("error", "")
            if code == "access_denied":
                raise LoginError("the sign-in was refused or cancelled at the provider (access_denied)")
            raise LoginError(
                f"the provider answered {code!r}: {query.get('error_description', 'no details')}"
            )
        iss = query.get("iss")
        if iss is not None and iss.rstrip("/") != self.session.settings.issuer_key:
            raise LoginError("the answer came from another issuer (RFC 9207 iss): login refused")
        received = query.get("code")
        if not received:
            raise LoginError("the provider's answer holds no code")
        code = received
        with _shield("exchanging the code", LoginError, code, self._verifier):
            return self.session._token_request(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": self._verifier,
                    **(
                        {"resource": self.session.settings.resource} if self.session.settings.resource else {}
                    ),
                },
                secrets=(code, self._verifier),
                nonce=self._nonce,
            )

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            threading.Thread(target=_shutdown, args=(server,), daemon=True).start()


def _shutdown(server: Any) -> None:
    server.shutdown()
    server.server_close()


def _listen(host: str, port: int, login: CodeLogin) -> Any:
    """A loopback HTTP server that hands GET requests to ``login._receive``."""
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qsl, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            parts = urlsplit(self.path)
            status, text = login._receive(parts.path, dict(parse_qsl(parts.query)))
            body = (
                "<!doctype html><meta charset=utf-8><title>session-magics</title>"
                f"<p style='font-family:sans-serif'>{html.escape(text)}</p>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the query holds the code
            return

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True
        allow_reuse_address = False

    try:
        return Server((host, port), Handler)
    except OSError as exc:
        raise LoginError(
            f"cannot listen on {host}:{port} for the sign-in redirect ({exc.strerror or exc}): "
            "free that port or choose another with --redirect-port"
        ) from None


def _seconds(value: Any, default: float, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        number = float(value)
    except ValueError:
        return default
    if number != number:  # NaN
        return default
    return min(max(number, low), high)


def make_session(profile: Profile, *args: Any, **kwargs: Any) -> ApiSession:
    """An :class:`OAuthSession` for an OAuth profile, else a plain :class:`ApiSession`."""
    if profile.oauth is not None:
        return OAuthSession(profile, *args, **kwargs)
    return ApiSession(profile, *args, **kwargs)


LoginStarter = Callable[[OAuthSession], PendingLogin]
