"""ApiSession: one profile's HTTP session and its token life cycle, usable without IPython.

>>> from session_magics.session import ApiSession
>>> from session_magics.profile import Profile
>>> s = ApiSession(Profile(name="demo", base_url="http://127.0.0.1:8765", user="demo"))
>>> s.login("demo", password)          # doctest: +SKIP
>>> s.request("GET", "/penguins").df   # doctest: +SKIP

How a request is authenticated (the renewal flow, :meth:`ApiSession.request_flow`):

1. Take the token: from memory, else from the store (read once per process).
   Refresh it first when it expires within ``leeway`` seconds.
2. Send. The token is attached only when the URL belongs to the profile's origin
   (scheme, host and port), and only if the request has no such header already.
3. If the answer is one of the profile's *expired* statuses (default 401):
   re-read the store (another kernel may have logged in) → else refresh, unless
   step 1 tried and failed (single-flight: threads that hit the 401 together cause one
   refresh; kernels too: the refresh holds the keyring lock, re-reads the store
   under it, and only then posts the refresh token) → else
   forget the token and ask for a login (the flow *yields* :class:`NeedLogin`;
   the caller's driver shows a form, prompts, reads an env var, or gives up with
   :class:`~session_magics.errors.SessionExpired`). Then retry — at most one
   refresh and one login per request: never a loop.

Every credential request (login, refresh, revoke) goes through
:meth:`ApiSession._send_credentials`, which asks :mod:`session_magics.trust` first.

The flow is a generator so that a synchronous driver (terminal, env var, scripts)
and an asynchronous one (the login form in a running notebook cell) share every
decision; :meth:`ApiSession.request` is the synchronous driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import LoginError, RequestFailed, SessionExpired
from .profile import Profile
from .redact import Redactor, sealed
from .steps import drive
from .store import KeyringStore, MemoryStore, TokenStore
from .tokens import Token, parse_token_response
from .transport import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    Download,
    TokenAuth,
    Transport,
    carried,
    redact_message,
    safe_url,
    scrub,
    shield,
)
from .trust import ApprovalNeeded, Approvals, CredentialEndpointRefused, Endpoint, Trust

if TYPE_CHECKING:
    import requests

    from .result import ApiResult


@dataclass(frozen=True)
class NeedLogin:
    """Yielded by :meth:`ApiSession.request_flow` when only a new login can go on."""

    profile: Profile
    reason: str  # "expired" | "not logged in"
    # Set when the session could not be renewed because a credential endpoint awaits approval.
    approval: ApprovalNeeded | None = None

    @property
    def message(self) -> str:
        if self.reason == "expired":
            return f"Session expired for {self.profile.describe()} — log in to continue"
        return f"Not logged in at {self.profile.origin_text} — log in to continue"


LoginDriver = Callable[[NeedLogin], None]


class ApiSession:
    """The token and HTTP session of one profile."""

    def __init__(
        self,
        profile: Profile,
        store: TokenStore | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        leeway: float = 30.0,
        approvals: Approvals | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.profile = profile
        self.approvals = approvals if approvals is not None else Approvals()
        if store is None:
            store = KeyringStore() if profile.use_keyring else MemoryStore()
        self.store: TokenStore = store
        self.transport = Transport(profile, timeout=timeout, max_body=max_body)
        self.leeway = leeway
        self._token: Token | None = None
        self._loaded = False
        self._lock = threading.RLock()  # single-flight refresh and token swaps
        self._refresh_failed: Token | None = None  # a token whose refresh was refused
        self.storage_warning: str | None = None

    def __repr__(self) -> str:
        state = "logged in" if self._token else "not logged in"
        return f"<ApiSession {self.profile.name!r} {self.profile.describe()} ({state})>"

    # ------------------------------------------------------------------ HTTP
    @property
    def timeout(self) -> float:
        return self.transport.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self.transport.timeout = value

    @property
    def max_body(self) -> int:
        return self.transport.max_body

    @max_body.setter
    def max_body(self, value: int) -> None:
        self.transport.max_body = value

    def close(self) -> None:
        self.transport.close()

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request through the transport (see :meth:`Transport.send`)."""
        return self.transport.send(method, url, **kwargs)

    # ---------------------------------------------------------------- tokens
    @property
    def token(self) -> Token | None:
        """The current token (loaded from the store on first use)."""
        with self._lock:
            if not self._loaded:
                self._token = self.store.load(self.profile)
                self._loaded = True
                if self._token and self._token.user and not self.profile.user:
                    self.profile.user = self._token.user
            return self._token

    def _remember(self, token: Token) -> Token:
        """Keep a new token in memory and in the store; a store failure loses nothing."""
        with self._lock:
            self._token = token
            self._loaded = True
            if token.user and not self.profile.user:
                self.profile.user = token.user
        try:
            self.store.save(self.profile, token)
            self.storage_warning = None
        except Exception as exc:  # the token is in memory: warn, do not fail the login
            reason = redact_message(str(exc), token.access_token, token.refresh_token)
            self.storage_warning = (
                f"logged in, but the token could not be saved in the keyring, so it is kept in "
                f"memory for this kernel only: {reason}"
            )
        return token

    def forget(self) -> None:
        """Drop the token from memory and from the store. The next use reads the store
        again, as a fresh kernel would: another kernel may log in meanwhile."""
        with self._lock:
            self._token = None
            self._loaded = False
        self.store.delete(self.profile)

    def token_in_memory(self) -> bool:
        """Whether this session holds a token now (without reading the store)."""
        with self._lock:
            return self._loaded and self._token is not None

    def take_over(self, old: ApiSession) -> None:
        """Keep the token of the session this one replaces (same origin and user).

        The token may exist in memory only (the keyring could not be written): a new
        session for the same API must not lose it.
        """
        with old._lock:
            token = old._token if old._loaded else None
        if token is None or old.profile.origin != self.profile.origin:
            return
        if self.profile.user not in (None, token.user, old.profile.user):
            return
        with self._lock:
            self._token, self._loaded = token, True
            self.profile.user = self.profile.user or token.user or old.profile.user

    def _drop(self, rejected: Token) -> None:
        """Forget a token the server rejected and that could not be renewed.

        Only that token: if another thread or kernel renewed meanwhile, the newer one
        stays. A store that cannot be written now does not stop the new login.
        """
        from .errors import KeyringError

        with self._lock:
            if self._token is not None and self._token.access_token != rejected.access_token:
                return
            self._token = None
            self._loaded = True
            try:
                stored = self.store.load(self.profile, fresh=True)
                if stored is None or stored.obtained_at <= rejected.obtained_at:
                    self.store.delete(self.profile)
            except KeyringError:
                pass

    # ----------------------------------------------------------- credentials
    @property
    def trust(self) -> Trust:
        """The credential rule of this profile (see :mod:`session_magics.trust`)."""
        return Trust(self.profile.origin, self.profile.allow_http, self.approvals)

    def credential_endpoint(self, role: str) -> Endpoint:
        """Where the credentials of ``role`` are posted, and who named it (see
        :meth:`Profile.credential_endpoint`; an OAuth session has the issuer's roles)."""
        return self.profile.credential_endpoint(role)

    def credential_endpoints(self) -> list[Endpoint]:
        """Every credential endpoint this session uses (what approvals are asked for)."""
        return self.profile.credential_endpoints()

    def pending_approvals(self) -> list[ApprovalNeeded]:
        """Credential endpoints a person must approve before this profile can use them."""
        return self.trust.pending(self.credential_endpoints())

    def credential_origins(self) -> list[str]:
        """Origins other than the API's that this profile sends credentials to."""
        from .trust import foreign_origins

        return foreign_origins(self.credential_endpoints(), self.profile.origin)

    def _json_credentials(self) -> bool:
        """Whether credential requests carry JSON (``--body json``) rather than a form."""
        return self.profile.body == "json"

    def _send_credentials(
        self,
        role: str,
        payload: dict[str, str],
        secrets: tuple[str | None, ...],
        *,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST ``payload`` to the ``role`` endpoint (login, refresh, revoke; an OAuth
        issuer's token, device and revoke): the one way a credential leaves. The trust
        check comes first; nothing is sent when it fails. ``headers``: e.g. the OAuth
        client's Basic credentials, which are a secret of the same endpoint."""
        url = self.trust.require(self.credential_endpoint(role))
        sent = {"Accept": "application/json", **(headers or {})}
        if self._json_credentials():
            return self._send("POST", url, json_body=payload, headers=sent, secrets=secrets, credentials=True)
        return self._send("POST", url, data=payload, headers=sent, secrets=secrets, credentials=True)

    def _post_credentials(self, role: str, payload: dict[str, str], secrets: tuple[str, ...]) -> Any:
        resp = self._send_credentials(role, payload, secrets)
        url = self.credential_endpoint(role).url
        ctype = resp.headers.get("Content-Type", "")
        try:
            data = resp.json()
        except (ValueError, RecursionError):  # RecursionError: absurdly deep JSON
            data = None
        if resp.status_code >= 400:
            raise LoginError(redact_message(_server_error(resp, data), *secrets))
        if data is None:
            what = "a body that is not valid JSON" if "json" in ctype.lower() else ctype or "no content type"
            raise LoginError(
                f"{safe_url(url)} answered {resp.status_code} with {what}, not a token in JSON: "
                "is the login endpoint right (--login)?"
            )
        return data

    @sealed(lambda self, user, password: (password,))
    def login(self, user: str, password: str) -> Token:
        """Log in with a user name and password; the password is used for this request only."""
        if not user:
            raise LoginError("a user name is needed")
        if not password:
            raise LoginError("the password is empty")
        with shield(f"logging in at {self.profile.origin_text}", LoginError, password):
            if self.profile.body == "json":
                payload = {"username": user, "password": password}
            else:
                payload = {"grant_type": "password", "username": user, "password": password}
            data = self._post_credentials("login", payload, (password,))
            token = parse_token_response(data, fields=self.profile.fields, user=user)
            self.profile.user = user
            return self._remember(token)

    @sealed(lambda self, secret, user=None: (secret,))
    def use_token(self, secret: str, user: str | None = None) -> Token:
        """Keep a pasted API token or personal access token (``--token``)."""
        secret = secret.strip()
        if not secret:
            raise LoginError("the token is empty")
        if any(ch.isspace() or not ch.isprintable() for ch in secret):
            raise LoginError(
                "a token has no spaces or control characters (paste the token only, without its scheme)"
            )
        with shield("keeping the token", LoginError, secret):
            user = user or self.profile.user or "token"
            self.profile.user = user
            from .tokens import jwt_expiry

            token = Token(
                access_token=secret,
                token_type=self.profile.scheme or "Bearer",
                expires_at=jwt_expiry(secret),
                user=user,
            )
            return self._remember(token)

    @sealed(lambda self, stale=None: _secrets_of(self._token))
    def refresh(self, stale: Token | None = None) -> Token | None:
        """Renew the token with its refresh token; None when that is impossible.

        At most one refresh request. Single-flight within the kernel (the session lock:
        a caller whose ``stale`` token was already replaced gets the new one without a
        request) and across kernels: the keyring lock is held while the store is read
        again (another kernel may have refreshed; with a rotating refresh token, ours is
        then spent), the refresh token is posted and the new token saved.

        Raises :class:`~session_magics.trust.ApprovalNeeded` when the refresh endpoint
        awaits the user's approval: nothing is sent, and the stored token is kept.
        """
        from contextlib import ExitStack, suppress

        from .errors import KeyringError

        with self._lock, ExitStack() as held:
            current = self.token
            if current is None:
                return None
            if stale is not None and current.access_token != stale.access_token:
                return current  # renewed meanwhile by another thread
            if not current.refresh_token or current is self._refresh_failed:
                return None  # (threads that wait here after a refused refresh do not try again)
            self.trust.require(self.credential_endpoint("refresh"))  # before any wait
            with suppress(KeyringError):  # the lock is for races, not a precondition
                held.enter_context(self.store.locked("refresh the token"))
            stored = self._stored_newer_than(current)
            if stored is not None:
                self._token = stored  # another kernel refreshed: its token, no request
                return stored
            field = current.refresh_field or "refresh_token"
            payload = {field: current.refresh_token}
            if self.profile.body != "json" or field == "refresh_token":
                payload = {"grant_type": "refresh_token", **payload}
            secrets = (current.refresh_token, current.access_token)
            try:
                with shield("refreshing the token", LoginError, *secrets):
                    data = self._post_credentials("refresh", payload, secrets)
                    token = parse_token_response(
                        data, fields=self.profile.fields, user=current.user, previous=current
                    )
            except LoginError:
                self._refresh_failed = current
                return None
            return self._remember(token)

    def _stored_newer_than(self, current: Token | None) -> Token | None:
        """The stored token if it is newer than ``current`` (another kernel renewed), else None.

        A store that cannot be read now (locked, hanging) counts as holding nothing new.
        """
        from .errors import KeyringError

        try:
            stored = self.store.load(self.profile, fresh=True)
        except KeyringError:
            return None
        if stored is None or (current is not None and stored.access_token == current.access_token):
            return None
        if current is not None and stored.obtained_at <= current.obtained_at:
            return None  # older: e.g. saving the newer one failed; never go back to it
        return stored

    def reload(self) -> Token | None:
        """Re-read the store (another kernel may have logged in or refreshed) and return the
        token to use: the stored one if it is newer than the one in memory."""
        with self._lock:
            current = self._token if self._loaded else None
        stored = self._stored_newer_than(current)
        with self._lock:
            if stored is not None and (self._token is None or stored.obtained_at > self._token.obtained_at):
                self._token = stored
            self._loaded = True
            return self._token

    @sealed(lambda self: _secrets_of(self._token))
    def logout(self) -> list[str]:
        """Revoke (when the profile has a revoke endpoint), then forget. Returns notes."""
        notes: list[str] = []
        token = self.token
        if token and self.profile.revoke:
            for secret, hint in (
                (token.refresh_token, "refresh_token"),
                (token.access_token, "access_token"),
            ):
                if not secret:
                    continue
                payload = {"token": secret, "token_type_hint": hint}
                try:
                    resp = self._send_credentials("revoke", payload, (secret,))
                    if resp.status_code >= 400:
                        notes.append(
                            f"the server refused to revoke the {hint.replace('_', ' ')} ({resp.status_code})"
                        )
                except (ApprovalNeeded, CredentialEndpointRefused) as exc:
                    notes.append(f"the tokens were not revoked: {exc}")
                    break
                except RequestFailed as exc:
                    notes.append(f"could not revoke: {exc}")
        self.forget()
        return notes

    def redactor(self) -> Redactor:
        """What displays of this session's answers hide: its tokens (and secrets kept for
        logins, see :func:`~session_magics.redact.kept_secrets`)."""
        from .redact import kept_secrets

        with self._lock:
            token = self._token
        return Redactor((*_secrets_of(token), *kept_secrets()))

    def auth_header(self, token: Token) -> tuple[str, str]:
        scheme = self.profile.scheme
        if scheme is None:
            scheme = token.token_type if self.profile.header.lower() == "authorization" else ""
        value = f"{scheme} {token.access_token}" if scheme else token.access_token
        return self.profile.header, value

    def renewable(self, token: Token) -> bool:
        """Whether ``token`` can be renewed without a person (here: it has a refresh token)."""
        return bool(token.refresh_token)

    def _usable_token(self) -> tuple[Token | None, bool, ApprovalNeeded | None]:
        """The token to send first; whether a refresh was tried for it and failed (the 401
        that may follow does not try another), and the approval that stopped a refresh."""
        token = self.token
        if token is not None and self.renewable(token) and token.is_expired(self.leeway):
            try:
                renewed = self.refresh(stale=token)
            except ApprovalNeeded as exc:
                return token, True, exc
            return renewed or token, renewed is None, None
        return token, False, None

    # -------------------------------------------------------------- requests
    def request_flow(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]] | dict[str, str] | None = None,
        body: str | bytes | None = None,
        auth: bool = True,
        timeout: float | None = None,
        max_body: int | None = None,
        save: str | None = None,
    ) -> Generator[NeedLogin, None, ApiResult]:
        """The renewal flow as a generator: yields :class:`NeedLogin`, returns the result.

        ``save``: a file that a successful answer's body is streamed to (not kept in memory).
        """
        from .result import ApiResult

        full_url = self.profile.url(url)
        hdrs: dict[str, str] = {}
        for key, value in headers.items() if isinstance(headers, dict) else headers or []:
            hdrs[key] = value
        has_own = any(k.lower() == self.profile.header.lower() for k in hdrs)
        authenticate = auth and not has_own and self.profile.owns(full_url)
        download = Download(save) if save else None
        elapsed: dict[requests.Response, float] = {}  # seconds per answer, redirects and retries included
        token_went = False  # whether the last answer came to a request that carried the token

        def send(token: Token | None) -> requests.Response:
            nonlocal token_went
            # The token is added by an auth hook on the prepared request: the URL checked
            # is the one requests sends, not the one written in the cell.
            auth_hook = None
            secrets: tuple[str, ...] = ()
            if authenticate and token is not None:
                name, value = self.auth_header(token)
                auth_hook = TokenAuth(self.profile, name, value)
                secrets = (token.access_token,)
            started = time.perf_counter()
            resp = self._send(
                method,
                full_url,
                headers=hdrs,
                data=body,
                timeout=timeout,
                max_body=max_body,
                download=download,
                auth=auth_hook,
                secrets=secrets,
            )
            elapsed[resp] = time.perf_counter() - started
            token_went = auth_hook is not None and carried(resp, auth_hook.name, auth_hook.value)
            if auth_hook is not None:
                scrub(resp, auth_hook.name, auth_hook.value)
            return resp

        def result(resp: requests.Response) -> ApiResult:
            answer = ApiResult(resp, method=method, elapsed=elapsed.get(resp))
            answer.extra_redacted = (self.profile.header,)
            answer.redactor = self.redactor()  # a server echoing the token: not in displays
            if download is not None and download.saved_to is not None:
                answer.saved_to, answer.saved_bytes = download.saved_to, download.size
            return answer

        if not authenticate:
            return result(send(None))

        token, refreshed, approval = self._usable_token()
        reread = logged_in = False
        while True:
            if token is None:
                if logged_in:
                    raise SessionExpired(f"{self.profile.describe()}: the login gave no token")
                reason = "expired" if (reread or refreshed) else "not logged in"
                yield NeedLogin(self.profile, reason, approval)
                logged_in = True
                token = self.token
                if token is None:
                    raise SessionExpired(f"Not logged in at {self.profile.origin_text}: run %login again")
            resp = send(token)
            if resp.status_code not in self.profile.expired_statuses or not token_went:
                # Not about our token: a 401 from another origin reached by a redirect (the
                # token was dropped on the way) is that server's answer, and costs nothing.
                return result(resp)
            resp.close()
            if logged_in:
                # A fresh login is rejected too: the token lacks rights here. Show the answer.
                return result(resp)
            if not reread:
                reread = True
                stored = self.reload()
                if stored is not None and stored.access_token != token.access_token:
                    token = stored
                    continue
            if not refreshed:
                refreshed = True
                try:
                    renewed = self.refresh(stale=token)
                except ApprovalNeeded as exc:
                    renewed, approval = None, exc
                if renewed is not None and renewed.access_token != token.access_token:
                    token = renewed
                    continue
            if approval is None:
                self._drop(token)
            # else: not renewed only for want of an approval: the refresh token stays stored
            token = None

    def request(
        self,
        method: str,
        url: str,
        *,
        on_login: LoginDriver | None = None,
        **kwargs: Any,
    ) -> ApiResult:
        """Send a request; ``on_login`` is called when a new login is needed.

        Without ``on_login`` (or when it does not log in), an expired session raises
        :class:`~session_magics.errors.SessionExpired`.
        """
        flow = self.request_flow(method, url, **kwargs)
        return drive(flow, on_login or self.no_login)

    def no_login(self, need: NeedLogin) -> None:
        """The login driver for where nobody is asked: the approval needed, or SessionExpired."""
        if need.approval is not None:
            raise need.approval
        if need.reason == "expired":
            raise SessionExpired(
                f"Session expired for {self.profile.describe()} and it could not be renewed: "
                f"run %login again (the stored token was removed)."
            )
        raise SessionExpired(f"Not logged in at {self.profile.origin_text}: run %login first.")


def _secrets_of(token: Token | None) -> tuple[str | None, ...]:
    return (token.access_token, token.refresh_token) if token is not None else ()


def _server_error(resp: requests.Response, data: Any) -> str:
    """The server's own words for a failed login/refresh (RFC 6749 §5.2 and common shapes)."""
    detail = None
    if isinstance(data, dict):
        parts = [data.get("error_description"), data.get("detail"), data.get("message")]
        text = next((p for p in parts if isinstance(p, str) and p), None)
        code = data.get("error") or data.get("code")
        if text and isinstance(code, str):
            detail = f"{text} ({code})"
        else:
            detail = text or (code if isinstance(code, str) else None)
    if detail is None:
        snippet = (resp.text or "").strip().splitlines()[:1]
        detail = snippet[0][:200] if snippet else resp.reason or "no details"
    return f"the server answered {resp.status_code}: {detail}"
