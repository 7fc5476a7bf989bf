"""The IPython magics: a thin layer of argument parsing and display over the core.

``%login``, ``%logout`` and ``%%api`` / ``%api``. All settings are traitlets, so
``%config SessionMagics`` lists them and ``%config SessionMagics.timeout = 60``
changes them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, kwds, magic_arguments, parse_argstring
from traitlets import Bool, Float, Int, List, TraitError, Unicode, observe, validate

from .errors import Interrupted, LoginCancelled, OneLine, ProfileError, SessionMagicsError, interrupted_wait

if TYPE_CHECKING:
    from .profile import Profile
    from .result import ApiResult
    from .session import ApiSession, NeedLogin
    from .store import TokenStore

_instance: SessionMagics | None = None


def _render_traceback(self: BaseException) -> list[str]:
    """Shown by IPython instead of a traceback: our errors are messages, not crashes."""
    return OneLine(type(self).__name__, str(self))()


SessionMagicsError._render_traceback_ = _render_traceback  # type: ignore[attr-defined]
# Ctrl+C inside a request: one line too (the frames it passed through hold the headers).
Interrupted._render_traceback_ = _render_traceback  # type: ignore[attr-defined]


@magics_class
class SessionMagics(Magics):
    """Log in to token-protected HTTP APIs and explore them from IPython."""

    timeout = Float(
        30.0,
        help="Most seconds one request may take in all (connect, answer, body, redirects, retries).",
    ).tag(config=True)
    max_body = Int(
        100 * 1024 * 1024,
        help="Largest answer body kept in memory, in bytes (default 100 MB); --save has no limit.",
    ).tag(config=True)

    @validate("timeout")
    def _check_timeout(self, proposal: Any) -> float:
        return _positive_seconds(proposal["value"], "SessionMagics.timeout", TraitError)

    @validate("max_body")
    def _check_max_body(self, proposal: Any) -> int:
        if proposal["value"] <= 0:
            raise TraitError(
                f"SessionMagics.max_body must be a positive number of bytes, not {proposal['value']}"
            )
        return int(proposal["value"])

    login_timeout = Float(300.0, help="How long a login form or prompt waits for the user, in seconds.").tag(
        config=True
    )
    leeway = Float(
        30.0, help="Refresh a token this many seconds before it expires (at most half its lifetime)."
    ).tag(config=True)
    use_keyring = Bool(
        True, help="Keep tokens in the OS keyring. False: in memory for this kernel only."
    ).tag(config=True)
    keyring_timeout = Float(10.0, help="Longest wait for one keyring call, in seconds.").tag(config=True)

    @observe("keyring_timeout")
    def _keyring_timeout_changed(self, change: Any) -> None:
        store = getattr(self, "_keyring_store", None)
        if store is not None:  # a %config after the first %login applies too
            store.timeout = change["new"]

    @observe("timeout", "leeway", "max_body")
    def _session_setting_changed(self, change: Any) -> None:
        for session in getattr(self, "sessions", {}).values():  # existing profiles follow %config
            setattr(session, change["name"], change["new"])

    allow_plaintext_keyring = Bool(
        False, help="Accept a keyring backend that stores secrets in a plaintext file."
    ).tag(config=True)
    expired_statuses = List(
        [401], help="HTTP statuses that mean 'the token is no longer valid' (e.g. [401, 403])."
    ).tag(config=True)
    login_path = Unicode("auth/token", help="Default token endpoint, relative to the base URL.").tag(
        config=True
    )
    max_pages = Int(100, help="Most pages that --all fetches (--max-pages overrides it).").tag(config=True)
    concurrency = Int(
        4,
        help="How many pages --all fetches at once when the first page tells how many there are "
        "(1: one after another; at most 10; --concurrency overrides it).",
    ).tag(config=True)
    cursor_param = Unicode(
        "cursor", help="Query parameter that sends a pagination cursor back (--cursor-param overrides it)."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.sessions: dict[str, ApiSession] = {}
        self.default_profile: str | None = None
        self._keyring_store: TokenStore | None = None
        self._memory_store: TokenStore | None = None
        self.file_config: Any = None  # config.ConfigState: settings and profiles from files
        # The last %login, while it has not logged in (cancelled, timed out, failed) and no
        # other profile is the default: its profile, and whether it was cancelled.
        self._unfinished_login: tuple[Profile, bool] | None = None

    # ------------------------------------------------------------ plumbing
    @property
    def _shell(self) -> Any:
        assert self.shell is not None
        return self.shell

    def store(self, use_keyring: bool) -> TokenStore:
        from .store import KeyringStore, MemoryStore

        if not use_keyring:
            if self._memory_store is None:
                memory: TokenStore = MemoryStore()
                self._memory_store = memory
            return self._memory_store
        if self._keyring_store is None:
            store: TokenStore = KeyringStore(
                timeout=self.keyring_timeout, allow_plaintext=self.allow_plaintext_keyring
            )
            self._keyring_store = store
        return self._keyring_store

    def session(self, name: str | None = None) -> ApiSession:
        """The session of profile ``name`` (default: the last one logged in)."""
        name = name or self.default_profile
        if name is None:
            if self._unfinished_login is not None:
                from .ui import who

                profile, was_cancelled = self._unfinished_login
                how = "was cancelled" if was_cancelled else "did not log in"
                raise ProfileError(
                    f"not logged in to {who(profile)}: the last %login {how}; run it again to log in"
                )
            raise ProfileError(
                "no API yet: run %login BASE_URL first (or give an absolute URL with --no-auth)"
            )
        try:
            return self.sessions[name]
        except KeyError:
            from .config import configured_session

            configured = configured_session(self, name)  # a profile from a config file
            if configured is not None:
                return configured
            known = ", ".join(sorted(self.sessions)) or "none"
            raise ProfileError(f"unknown profile {name!r} (known: {known})") from None

    def _evaluate(self, expr: str) -> Any:
        return self._shell.ev(expr)

    def _display(self, obj: Any) -> None:
        from IPython.display import display

        display(obj)

    # ----------------------------------------------------- asking for login
    def _title(self, need: NeedLogin) -> str:
        return need.message

    def _login_env(self, session: ApiSession) -> str | None:
        """Log in from --password-env / --token-env when the variable is set.

        Returns None when logged in, else a note for the interactive fallback (the
        variable is not set: a person is asked instead, or, with nobody to ask, the
        error names the variable).
        """
        from .redact import take_from_environment

        profile = session.profile
        var = profile.token_env or profile.password_env
        if var is None:
            return ""
        # Read once, then removed from the environment (%env, child processes) and kept
        # in memory for later logins. No local variable here holds the secret itself
        # (IPython's Verbose tracebacks show local variables): only a Secret, whose repr
        # shows nothing.
        kept = take_from_environment(var)
        if kept is None:
            return f"${var} is not set"
        if profile.token_env:
            session.use_token(kept.reveal(), profile.user)
        else:
            if not profile.user:
                raise ProfileError("--password-env needs --user NAME")
            session.login(profile.user, kept.reveal())
        return None

    def _forms(self, session: ApiSession, title: str) -> Generator[Any, None, None]:
        """Get a login for ``session``: env var, form, terminal prompt, or a clear error;
        yields each form or panel a person has to answer. A kernel that could not handle
        the form's messages while it waits fails here, before the form is shown."""
        if session.profile.oauth is not None:
            from .oauth_ui import ask

            yield from ask(session, title)  # type: ignore[arg-type]
            return
        from . import waiting
        from .redact import take_from_environment
        from .ui import LoginForm, no_frontend_error, terminal_login

        pending = session.pending_approvals()
        # --password-env / --token-env with the variable set (or kept from an earlier read):
        # a scheduled run, where nobody confirms anything. Unset, a person is asked below.
        env_login = session.profile.token_env or session.profile.password_env
        if pending and env_login and take_from_environment(env_login) is not None:
            raise pending[0]
        note = self._login_env(session)
        if note is None:
            return
        kind = waiting.frontend()
        if pending and kind not in ("widgets", "terminal"):
            raise pending[0]  # nobody can be asked: say how to approve, send nothing
        if kind == "widgets":
            waiting.check_can_wait()
            form = LoginForm(session, title)
            self._display(form)
            yield form
        elif kind == "terminal":
            terminal_login(session, title)
        else:
            raise no_frontend_error(session, f"{title} ({note})" if note else title)

    def _ask(self, session: ApiSession, title: str) -> Generator[Any, None, bool]:
        """The steps of a login: yields each form or panel to wait for (the driver waits,
        then closes it; see :mod:`session_magics.steps`), and returns whether a form was
        answered (its output already says "Logged in"). More than one may come (an OAuth
        approval, then the sign-in panel): one that fails ends the login."""
        from .ui import outcome

        answered = False
        for form in self._forms(session, title):
            yield form
            _outcome(form, self.login_timeout, outcome)
            # A login form is replaced by its "Logged in" line; an OAuth panel is not.
            answered = getattr(form, "announces", True)
        return answered

    def _waiter(self, what: str) -> Callable[[Any], None]:
        """The synchronous driver's answer to a step of the magic ``what`` (``%login``,
        ``%%api``...): wait for the form, then close it."""
        from . import waiting

        def wait(form: Any) -> None:
            with _waiting_on(form, what):
                waiting.wait_for(form.is_finished, self.login_timeout)

        return wait

    def _waiter_async(self, what: str) -> Callable[[Any], Awaitable[None]]:
        """The asynchronous twin of :meth:`_waiter`."""
        from . import waiting

        async def wait(form: Any) -> None:
            with _waiting_on(form, what):
                await waiting.wait_for_async(form.is_finished, self.login_timeout)

        return wait

    # ---------------------------------------------------------------- %login
    def profile_from_args(self, args: Any) -> Profile | None:
        """The profile %login's options describe (completed from a configured profile), or
        None when they give no URL and name a session this kernel has (or the default one)."""
        from .config import completed

        name = args.profile
        options, set_by = completed(self, name, _line_options(args))
        if not options.get("base_url"):
            if name and name in self.sessions:
                return None
            if self.default_profile and not name:
                return None
            raise ProfileError("give the API's base URL: %login https://api.example.com")
        return self.profile_from(name, options, set_by)

    def profile_from(self, name: str | None, options: dict[str, Any], set_by: dict[str, Any]) -> Profile:
        """The profile of ``options``, named by their profile keys (see config.PROFILE_KEYS;
        from a %login line, a configured profile or both), ``set_by`` saying who named each
        credential endpoint (see trust.py)."""
        from .profile import Profile
        from .tokens import FieldNames

        scheme = options.get("scheme")
        if scheme is not None and scheme.lower() in ("", "none"):
            scheme = ""
        expired = options.get("expired_status")
        try:
            statuses = frozenset(int(s) for s in (expired.split(",") if expired else self.expired_statuses))
        except ValueError:
            raise ProfileError("--expired-status takes numbers, e.g. 401,403") from None
        profile = Profile(
            name="",
            base_url=options["base_url"],
            user=options.get("user"),
            login=options.get("login") or self.login_path,
            refresh=options.get("refresh"),
            revoke=options.get("revoke"),
            body=options.get("body") or "form",
            scheme=scheme,
            header=options.get("header") or "Authorization",
            token_mode=bool(options.get("token_mode") or options.get("token_env")),
            fields=FieldNames(
                options.get("access_field"), options.get("refresh_field"), options.get("expires_field")
            ),
            expired_statuses=statuses,
            allow_http=bool(options.get("allow_http")),
            use_keyring=self.use_keyring and not options.get("no_keyring"),
            password_env=options.get("password_env"),
            token_env=options.get("token_env"),
            oauth=_oauth_settings(options),
            set_by=set_by,
        )
        profile.name = name or profile.origin_text
        return profile

    def session_for(self, profile: Profile) -> ApiSession:
        """The session for ``profile``: the one this kernel has if its profile is the same, else a new one."""
        from .session import ApiSession

        if profile.oauth is not None:
            from .oauth import OAuthSession as ApiSession
        old = self.sessions.get(profile.name)
        if old is not None and old.profile == profile:
            return old
        if old is not None:
            old.close()
        session = ApiSession(
            profile,
            self.store(profile.use_keyring),
            timeout=self.timeout,
            leeway=self.leeway,
            max_body=self.max_body,
        )
        if old is not None:
            session.take_over(old)  # e.g. %login URL again: keep a token held only in memory
        self.sessions[profile.name] = session
        return session

    def _parse_login_line(self, line: str) -> Any:
        """``%login`` options, with ``{{expr}}`` values inserted *after* the line is split:
        a value is one argument whatever it holds (`` --login http://elsewhere`` in a value
        stays part of that value, never an option)."""
        import secrets

        from .request import PLACEHOLDER, interpolate

        values: dict[str, str] = {}
        tag = f"smv{secrets.token_hex(8)}n"

        def mask(match: Any) -> str:
            key = f"{tag}{len(values)}x"
            values[key] = interpolate(match.group(0), self._evaluate)
            return key

        masked = PLACEHOLDER.sub(mask, line)
        interpolate(masked, self._evaluate)  # a lone '{{' or '}}': the usual error
        args = parse_argstring(self.login, masked)
        if not values:
            return args

        def fill(value: Any) -> Any:
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, str) and tag in value:
                for key, text in values.items():
                    value = value.replace(key, text)
            return value

        for name, value in vars(args).items():
            setattr(args, name, fill(value))
        return args

    def _login_prepare(self, line: str) -> tuple[Any, ApiSession | None]:
        args = self._parse_login_line(line)
        if args.status:
            self._print_status()
            return args, None
        profile = self.profile_from_args(args)
        session = self.session_for(profile) if profile else self.session(args.profile)
        if not session.profile.use_keyring:
            print(
                "Note: --no-keyring: the token is kept in memory only and is lost when the kernel stops.",
                file=sys.stderr,
            )
        return args, session

    def _already(self, args: Any, session: ApiSession) -> bool:
        if args.force:
            return False
        from .trust import ApprovalNeeded

        token = session.token
        if token is None:
            return False
        if token.is_expired(self.leeway):
            try:
                renewed = session.refresh(stale=token) if token.refresh_token else None
            except ApprovalNeeded:
                return False  # the login asks for the approval (or says how to give it)
            if renewed is None:
                session.forget()
                return False
        self._logged_in(session, again=False)
        return True

    def _logged_in(self, session: ApiSession, *, again: bool = True, announce: bool = True) -> None:
        """Make ``session`` the default and say so (unless a form's line already did)."""
        self.default_profile = session.profile.name
        token = session.token
        where = session.profile.origin_text
        if token is None or not announce:
            return
        verb = "Logged in" if again else "Already logged in"
        msg = f"{verb} as {token.user} at {where} (token {token.describe_expiry()})"
        if session.profile.name != where:
            msg += f" — profile {session.profile.name!r}"
        if session.profile.oauth is not None:
            msg += f" — via {session.profile.oauth.issuer_key}"  # where the credentials go
        from .trust import credentials_note

        msg += credentials_note(session)  # credential origins other than the API's
        print(msg)
        if session.storage_warning:
            print(f"Warning: {session.storage_warning}", file=sys.stderr)

    @magic_arguments()
    @kwds(usage="%(prog)s [BASE_URL] [options]")
    @argument("url", nargs="*", metavar="BASE_URL", help="The API's base URL, e.g. https://api.example.com/v1")
    @argument(
        "--profile",
        help="Name this API (several can live side by side), or use a profile configured in "
        "your user config file or a project's pyproject.toml ([tool.session_magics.profiles.NAME]). "
        "Default: its origin.",
    )
    @argument("--user", help="User name (asked for when missing).")
    @argument(
        "--login",
        metavar="PATH_OR_URL",
        help="Token endpoint (default: SessionMagics.login_path, auth/token). Credentials go there; "
        "another origin is your choice here, but needs your approval when only a project file names it.",
    )
    @argument("--refresh", metavar="PATH_OR_URL", help="Refresh endpoint (default: the token endpoint).")
    @argument(
        "--revoke",
        metavar="PATH_OR_URL",
        help="Revocation endpoint, called by %%logout (with --oauth: default from discovery).",
    )
    @argument(
        "--body",
        choices=["form", "json"],
        help="How credentials are posted: an OAuth2 form (default) or JSON.",
    )
    @argument(
        "--scheme",
        help="Scheme before the token, e.g. Bearer (default: the server's "
        "token_type), Token for Django REST Framework, none for a bare key.",
    )
    @argument(
        "--header",
        help="Header that carries the token, e.g. X-API-Key (default: Authorization).",
    )
    @argument(
        "--token",
        action="store_true",
        help="Ask for a token (API key, personal access token) instead of a password.",
    )
    @argument(
        "--password-env",
        metavar="VAR",
        help="Take the password from this environment variable (if unset: ask, or fail "
        "at once where nobody can be asked). Once read, VAR is removed from the environment "
        "(%%env, child processes); the kernel keeps the value in memory for later logins.",
    )
    @argument(
        "--token-env",
        metavar="VAR",
        help="Take the token from this environment variable (likewise, and likewise removed once read).",
    )
    @argument("--access-field", metavar="PATH", help="Field of the token response holding the token.")
    @argument("--refresh-field", metavar="PATH", help="Field holding the refresh token.")
    @argument("--expires-field", metavar="PATH", help="Field holding the lifetime in seconds.")
    @argument(
        "--expired-status",
        metavar="CODES",
        help="Statuses meaning 'token no longer valid', e.g. 401,403 "
        "(default: SessionMagics.expired_statuses, 401).",
    )
    @argument(
        "--allow-http",
        action="store_true",
        help="Allow plain http to a host other than this machine, for the API and its credential "
        "endpoints (tokens and passwords travel unencrypted).",
    )
    @argument(
        "--no-keyring",
        action="store_true",
        help="Keep the token in memory for this kernel only, not in the OS keyring.",
    )
    @argument(
        "--oauth",
        choices=["device", "code", "client"],
        help="Log in with OAuth 2.0 / OpenID Connect at --issuer: device (a link and a code, approved "
        "in any browser), code (sign in in the browser; authorization code + PKCE, loopback redirect), "
        "client (client credentials, no person).",
    )
    @argument(
        "--issuer", metavar="URL", help="With --oauth: the authorization server (its discovery is read)."
    )
    @argument("--client-id", metavar="ID", help="With --oauth: the application's client id.")
    @argument("--scope", help='With --oauth: the scopes to ask for, e.g. "openid profile read".')
    @argument(
        "--client-secret-env",
        metavar="VAR",
        help="With --oauth: the environment variable holding the client secret (confidential clients).",
    )
    @argument(
        "--redirect-port",
        type=int,
        metavar="N",
        help="With --oauth code: the loopback port to listen on (default: any free port).",
    )
    @argument(
        "--redirect-uri",
        metavar="URI",
        help="With --oauth code: the registered redirect URI (default: http://127.0.0.1:PORT/callback).",
    )
    @argument(
        "--token-url", metavar="URL", help="With --oauth: the token endpoint (default: from discovery)."
    )
    @argument(
        "--device-url",
        metavar="URL",
        help="With --oauth device: the device endpoint (default: from discovery).",
    )
    @argument(
        "--authorize-url",
        metavar="URL",
        help="With --oauth code: the authorization endpoint (default: from discovery).",
    )
    @argument("--audience", help="With --oauth: an audience parameter, for providers that need one.")
    @argument("--resource", metavar="URI", help="With --oauth: a resource indicator (RFC 8707).")
    @argument("--force", action="store_true", help="Log in again even if a valid token is stored.")
    @argument(
        "--status", action="store_true", help="Show who is logged in where, and until when (never the token)."
    )
    @no_var_expand
    @line_magic
    def login(self, line: str = "") -> None:
        """Log in to an API once; the token is kept in the OS keyring, never in the notebook.

        With a valid stored token it just says who is logged in. Otherwise it shows a
        login form (JupyterLab / Notebook), prompts (terminal IPython), or reads the
        secret from --password-env / --token-env (scheduled runs). ``{{expr}}`` inserts
        a Python value, as in %%api; each value is one argument (it cannot add options).
        Credentials go to the API's origin, or to another origin you name here or in your
        config file; one that only a project's pyproject.toml names is asked about first. ::

            %login http://127.0.0.1:8765 --user demo
            %login {{API_URL}} --user demo --password-env DEMO_PASSWORD
            %login https://api.example.com --token --header X-API-Key
            %login https://api.example.com --user bot --password-env API_PASSWORD
            %login https://api.example.com --oauth device --issuer https://login.example.com --client-id ID
            %login {{API_URL}} --oauth client --issuer {{ISSUER}} --client-id ID --client-secret-env VAR
            %login --status

        ``--oauth device|code|client`` logs in at an OAuth 2.0 / OpenID Connect issuer:
        a device code panel, a sign-in link with a loopback redirect, or client
        credentials (see docs/oauth.md).
        """
        from .steps import run

        run(self._login_steps(line), self._waiter("%login"))

    async def login_async(self, line: str = "") -> None:
        from .steps import run_async

        await run_async(self._login_steps(line), self._waiter_async("%login"))

    def _login_steps(self, line: str) -> Generator[Any, None, None]:
        """The body of %login, for both drivers: yields each form to wait for."""
        args, session = self._login_prepare(line)
        if session is None or self._already(args, session):
            return
        try:
            shown = yield from self._ask(session, f"Log in to {session.profile.origin_text}")
        except SessionMagicsError as exc:
            if self.default_profile is None:  # what %%api says while no API is logged in
                self._unfinished_login = (session.profile, isinstance(exc, LoginCancelled))
            raise
        self._unfinished_login = None
        self._logged_in(session, announce=not shown)

    def _print_status(self) -> None:
        from .config import add_configured_sessions, source_note
        from .trust import credentials_note

        add_configured_sessions(self)  # configured profiles are listed too
        if not self.sessions:
            print("No profiles yet: %login BASE_URL")
            return
        rows = []
        missing: dict[str, None] = {}  # why some tokens could not be looked at (each reason once)
        for name, session in self.sessions.items():
            try:
                token = session.token
                state = (
                    f"{token.user}, token {token.describe_expiry()}"
                    + (", refreshable" if token.refresh_token else "")
                    if token
                    else "not logged in"
                )
            except SessionMagicsError as exc:
                state = "token unknown (see below)"
                missing[str(exc)] = None
            try:
                where = session.store.description
            except SessionMagicsError as exc:  # no usable keyring: say so once, below
                where = "OS keyring (unavailable)"
                missing[str(exc)] = None
            mark = "*" if name == self.default_profile else " "
            url = session.profile.base_url
            label = url if name == session.profile.origin_text else f"{name}: {url}"
            oauth_note = getattr(session, "status_note", None)  # issuer, flow and scopes
            note = (oauth_note() if oauth_note else "") + credentials_note(session) + source_note(self, name)
            rows.append(f"{mark} {label} — {state} — {where}{note}")
        rows += [f"Could not read the keyring: {reason}" for reason in missing]
        print("\n".join(rows))

    # --------------------------------------------------------------- %logout
    def _logout_session(self, target: str | None) -> tuple[ApiSession, bool]:
        """The session to log out of, and whether it is a temporary one (a URL this kernel
        has no profile for: its stored login is looked up in the keyring, as a fresh kernel
        would)."""
        from .profile import Profile, origin_of

        if target is None or target in self.sessions:
            return self.session(target), False
        origin = origin_of(target)
        if origin is None:
            return self.session(target), False  # a configured profile, or a clear error
        for session in self.sessions.values():  # a profile of this kernel for that origin
            if session.profile.origin == origin:
                return session, False
        try:
            return self.session(target), False  # a configured profile named like a URL
        except ProfileError:
            pass
        from .session import ApiSession

        profile = Profile(name="", base_url=target, allow_http=True)
        profile.name = profile.origin_text
        return ApiSession(profile, self.store(self.use_keyring), timeout=self.timeout), True

    @magic_arguments()
    @kwds(usage="%(prog)s [URL | --profile NAME]")
    @argument(
        "url",
        nargs="?",
        metavar="URL",
        help="The API's base URL (or origin): logs out of the login stored for it, whether "
        "or not this kernel logged in there.",
    )
    @argument(
        "--profile",
        metavar="NAME",
        help="The profile (or base URL) to log out of (default: the current one).",
    )
    @no_var_expand
    @line_magic
    def logout(self, line: str = "") -> None:
        """Log out: revoke the token (if the API has a revoke endpoint; with --oauth, at the
        issuer's revocation endpoint), delete it from the keyring and from memory. ::

            %logout
            %logout http://127.0.0.1:8765
            %logout --profile prod

        A URL finds the login stored in the keyring for its origin, also from a kernel
        that never ran %login there. Afterwards this kernel reads the keyring again
        when the profile is next used, so a login made meanwhile by another kernel
        counts."""
        from .errors import KeyringError

        args = parse_argstring(self.logout, line)
        if args.url and args.profile:
            raise ProfileError("give either a URL or --profile, not both")
        session, temporary = self._logout_session(args.url or args.profile)
        where = session.profile.origin_text
        in_memory = session.token_in_memory()
        stored = False
        try:
            found = session.store.load(session.profile, fresh=True) is not None
        except KeyringError:
            found = False
        if session.profile.use_keyring:
            stored = found
        else:  # --no-keyring: the "store" is this kernel's memory
            in_memory = in_memory or found
        try:
            notes = session.logout()
        finally:
            if temporary:
                session.close()
        for note in notes:
            print(f"Note: {note}", file=sys.stderr)
        if stored:
            print(f"Logged out of {where}; the stored token was deleted.")
        elif in_memory:
            print(f"Logged out of {where}; the token (kept in memory only) was dropped.")
        else:
            print(f"Not logged in at {where}: no stored token, nothing was deleted.")

    # ------------------------------------------------------------------ %%api
    def _api_prepare(self, line: str, cell: str | None) -> tuple[Any, ApiSession | None, dict[str, Any]]:
        from .profile import origin_of
        from .request import parse_request

        args = _api_options(line)
        if args.env is not None and args.file is None:
            raise SessionMagicsError("--env chooses an environment of an .http file: use it with --file")
        if args.file is not None:
            spec = self._file_request(args, cell)
        elif cell is None:
            text = " ".join(args.request)
            if not text.strip():
                raise SessionMagicsError("give a request: %api GET /path (or use %%api as a cell magic)")
        else:
            if args.request:
                raise SessionMagicsError(
                    f"unexpected {' '.join(args.request)!r} after %%api: the request goes on the next line"
                )
            text = cell
        if args.file is None:
            spec = parse_request(text, self._evaluate)
        absolute = origin_of(spec.url) is not None
        # No profile at all and an absolute URL: a plain request, no token anywhere.
        plain = absolute and not args.profile and self.default_profile is None
        session = None if plain else self.session(args.profile)
        kwargs: dict[str, Any] = dict(
            headers=spec.headers,
            body=spec.body.encode("utf-8") if spec.body is not None else None,
            timeout=None if args.timeout is None else _positive_seconds(args.timeout, "--timeout"),
            max_body=None if args.max_body is None else _byte_size(args.max_body),
            auth=not args.no_auth,
        )
        if spec.body is not None and spec.header("Content-Type") is None:
            kwargs["headers"] = spec.headers + [
                ("Content-Type", "application/json" if spec.json_body else "text/plain; charset=utf-8")
            ]
        kwargs["method"], kwargs["url"] = spec.method, spec.url
        if spec.graphql is not None:
            kwargs["graphql"] = spec.graphql  # see graphql.py
        if args.save:
            if getattr(args, "all", False) or getattr(args, "df", False) or getattr(args, "extract", None):
                raise SessionMagicsError("--save writes one answer to a file: not with --all/--df/--extract")
            kwargs["save"] = args.save  # the body is streamed to the file, never held whole
        return args, session, kwargs

    def _file_request(self, args: Any, cell: str | None) -> Any:
        """--file FILE [NAME]: the named request of an .http file (see httpfile.py); the
        cell, if any, holds headers that replace or add to the request's."""
        from .explore import unquote
        from .httpfile import apply_headers, load_request, say
        from .request import parse_request

        name = unquote(" ".join(args.request)) or None
        loaded = load_request(unquote(args.file) or "", name, unquote(args.env))
        say(loaded.note)
        args.http_secrets = loaded.secrets
        with _hiding(loaded.secrets):
            try:
                spec = parse_request(loaded.text, self._evaluate, first_line=loaded.first_line)
            except SessionMagicsError as exc:
                raise type(exc)(f"{args.file}: {exc}") from None
            if cell:
                apply_headers(spec, cell, self._evaluate)
        return spec

    def _api_flow(self, args: Any, session: ApiSession, kwargs: dict[str, Any]) -> Generator[Any, None, Any]:
        """The renewal flow of the request, or with --all of every page (see pagination.py)."""
        graphql = kwargs.get("graphql")
        if graphql is not None:
            return self._graphql_flow(args, session, kwargs)
        if not getattr(args, "all", False):
            return session.request_flow(**kwargs)
        from .explore import unquote
        from .pagination import paginate

        return paginate(
            session,
            max_pages=args.max_pages if args.max_pages is not None else self.max_pages,
            cursor_param=unquote(args.cursor_param) or self.cursor_param,
            next_expr=unquote(args.next_expr),
            progress=not args.quiet,
            frame=bool(args.df and args.extract is None),  # only a DataFrame is wanted
            concurrency=args.concurrency if args.concurrency is not None else self.concurrency,
            **kwargs,
        )

    def _graphql_flow(
        self, args: Any, session: ApiSession, kwargs: dict[str, Any]
    ) -> Generator[Any, None, Any]:
        """A GraphQL operation, or with --all every page of its Relay connection (graphql.py)."""
        from .graphql import DEFAULT_CURSOR_VARIABLE, graphql_flow, paginate_graphql

        rest = {k: v for k, v in kwargs.items() if k not in ("graphql", "body")}
        if not getattr(args, "all", False):
            return graphql_flow(session, kwargs["graphql"], **rest)
        from .explore import unquote

        return paginate_graphql(
            session,
            kwargs["graphql"],
            max_pages=args.max_pages if args.max_pages is not None else self.max_pages,
            cursor_param=unquote(args.cursor_param) or DEFAULT_CURSOR_VARIABLE,
            next_expr=unquote(args.next_expr),
            progress=not args.quiet,
            frame=bool(args.df and args.extract is None),
            concurrency=args.concurrency if args.concurrency is not None else self.concurrency,
            **rest,
        )

    def _plain_request(self, kwargs: dict[str, Any], args: Any = None) -> ApiResult:
        """A request with no profile at all (an absolute URL before any %login)."""
        from .profile import Profile, format_origin, origin_of
        from .session import ApiSession
        from .steps import drive

        where = origin_of(kwargs["url"])
        origin = format_origin(where) if where else kwargs["url"]
        session = ApiSession(
            Profile(name="", base_url=origin, allow_http=True),
            self.store(False),
            timeout=self.timeout,
            max_body=self.max_body,
        )
        try:
            return drive(self._api_flow(args, session, {**kwargs, "auth": False}), session.no_login)
        finally:
            session.close()

    def _api_finish(self, args: Any, result: ApiResult) -> Any:
        secrets = getattr(args, "http_secrets", ())
        if secrets:  # values of an .http file's private environment: hidden in every display
            for shown in (result, *getattr(result, "pages", ())):
                shown.redactor = shown.redactor.including(secrets)
        if args.save:
            self._save(args.save, result)
        value: Any = result
        if args.all or args.df or args.extract is not None:
            from .explore import value_of

            value = value_of(result, df=args.df, extract_expr=args.extract)  # pages, a frame, an extract
        if args.output:
            self._shell.user_ns[args.output] = value
        if args.verbose:
            print(result.headers_text())
        if args.quiet:
            return None
        # The summary line, once per cell whatever the frontend: a line of its own, shown
        # whether the value is displayed (its display in this cell then leaves the line
        # out) or assigned (x = %api ..., where nothing else would be shown).
        self._display(result.summary_line())
        result.summary_shown()
        return value

    def _save(self, path: str, result: ApiResult) -> None:
        """--save FILE: the body was streamed to FILE (successful answers only)."""
        from .result import human_size

        if result.saved_to is None:
            print(f"Nothing saved to {path}: the server answered {result.status_code}.", file=sys.stderr)
            return
        print(f"Saved {human_size(result.saved_bytes)} to {result.saved_to}")

    @magic_arguments()
    @kwds(usage="%%api [options]\n  %%%(prog)s [options] METHOD URL")
    @argument("request", nargs="*", metavar="METHOD URL", help="Line form only: the request, e.g. GET /users")
    @argument(
        "-o",
        "--output",
        metavar="NAME",
        help="Also assign the cell's value (the result, or what --df / --extract make) to this variable.",
    )
    @argument("--profile", help="Which API (default: the last one logged in).")
    @argument("--no-auth", action="store_true", help="Send no token.")
    @argument(
        "-v",
        "--verbose",
        action="store_true",
        help="Show request and response headers (credentials redacted).",
    )
    @argument(
        "--timeout",
        type=float,
        help="Most seconds the whole request may take: connect, answer, body, redirects and "
        "retries (default: SessionMagics.timeout).",
    )
    @argument(
        "--max-body",
        metavar="SIZE",
        help="Largest body kept in memory, e.g. 500MB or 2GB (default: SessionMagics.max_body, "
        "100 MB); a larger answer is an error. --save has no limit. With --all: each page, and "
        "all pages together (the walk stops once they are larger).",
    )
    @argument("-q", "--quiet", action="store_true", help="Show nothing (use with -o).")
    @argument(
        "--save",
        metavar="FILE",
        help="Stream the body to FILE in chunks instead of keeping it in memory (large or binary answers).",
    )
    @argument(
        "--all",
        action="store_true",
        help="Follow pagination (a Link rel=next header, next / next_page / links.next in the body, "
        "or a cursor such as meta.next_cursor) and combine the records of every page.",
    )
    @argument(
        "--max-pages",
        type=int,
        metavar="N",
        help="With --all: stop after N pages, and say so (default: SessionMagics.max_pages, 100).",
    )
    @argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="With --all: fetch up to N pages at once when the first page tells how many there are "
        "(a total, a page count or Link rel=last); 1 to 10, 1 fetches one after another "
        "(default: SessionMagics.concurrency, 4).",
    )
    @argument(
        "--cursor-param",
        metavar="NAME",
        help="With --all: the query parameter that sends a cursor back (default: "
        "SessionMagics.cursor_param, cursor); for GraphQL, "
        "the variable that sends pageInfo.endCursor back (default: after).",
    )
    @argument(
        "--next",
        dest="next_expr",
        metavar="EXPR",
        help="With --all: a JMESPath expression giving the next page's URL, number or cursor.",
    )
    @argument(
        "--file",
        metavar="FILE",
        help="Send a request of an .http file (VS Code REST Client / JetBrains): %%api --file FILE NAME; "
        "the cell may add or replace headers.",
    )
    @argument(
        "--env",
        metavar="NAME",
        help="With --file: the environment whose variables the file uses (http-client.env.json, "
        "REST Client settings).",
    )
    @argument("--df", action="store_true", help="Make the cell's value a pandas DataFrame of the records.")
    @argument(
        "--extract",
        metavar="EXPR",
        help="Make the cell's value what this JMESPath expression selects from the answer "
        "(with --all: from the list of all records).",
    )
    @no_var_expand
    @line_cell_magic
    def api(self, line: str = "", cell: str | None = None) -> ApiResult | None:
        """Send an HTTP request written like an HTTP file; the token is added for its API only.

        ::

            %%api -o penguins
            GET /penguins?per_page=50
            Accept: application/json

            (blank line, then an optional JSON or text body)

        ``{{expr}}`` inserts a Python value. The result has ``status_code``,
        ``headers``, ``text``, ``json()``, ``.data`` and ``.df``. An expired session is
        renewed (refresh, or a login form right here) and the request completes.
        Line form: ``%api GET /path`` and ``x = %api GET /path``.

        ``--all`` follows pagination and combines every page's records; ``--df``
        makes the value a DataFrame, ``--extract EXPR`` the part JMESPath selects::

            df = %api GET /penguins --all --df
            %api GET /penguins --extract "results[?species=='Gentoo'].body_mass_g"

        Pages the first page announces (a total, a page count, Link rel="last") are
        fetched ``--concurrency`` at a time (default 4). A GraphQL query is a body
        (variables as JSON after a blank line); ``--file FILE NAME [--env ENV]`` sends
        a request of a VS Code REST Client / JetBrains ``.http`` file.
        """
        from .steps import drive

        return drive(self._api_steps(line, cell), self._waiter(_api_name(cell)))

    async def api_async(self, line: str = "", cell: str | None = None) -> ApiResult | None:
        from .steps import drive_async

        return await drive_async(self._api_steps(line, cell), self._waiter_async(_api_name(cell)))

    def _api_steps(self, line: str, cell: str | None) -> Generator[Any, None, Any]:
        """The body of %%api, for both drivers: yields each form to wait for. Driven by
        the sealed drivers: no traceback reaches the frames of the renewal flow."""
        from .steps import answering

        args, session, kwargs = self._api_prepare(line, cell)
        with _hiding(getattr(args, "http_secrets", ())):
            if session is None:
                return self._api_finish(args, self._plain_request(kwargs, args))
            flow = self._api_flow(args, session, kwargs)
            result = yield from answering(flow, lambda need: self._ask(session, self._title(need)))
            return self._api_finish(args, result)


def _api_options(line: str) -> argparse.Namespace:
    """``%%api``'s options: a copy of what :func:`_parse_api_line` found (the caller may
    add to it)."""
    return argparse.Namespace(**vars(_parse_api_line(line)))


@functools.lru_cache(maxsize=256)
def _parse_api_line(line: str) -> argparse.Namespace:
    """The options of one ``%%api`` line, parsed once: a cell run again, or the same line
    in many cells, skips argparse (about 2 % of a local ``%%api -q``; see the row
    api_q of docs/performance.md). An invalid line raises every time: errors are not
    cached."""
    return parse_argstring(SessionMagics.api, line)


@contextmanager
def _hiding(secrets: tuple[str, ...]) -> Iterator[None]:
    """Errors of a request from an .http file never show its private environment's values."""
    try:
        yield
    except SessionMagicsError as exc:
        if not secrets:
            raise
        from .redact import redact_message

        text = redact_message(str(exc), *secrets)
        if text == str(exc):
            raise
        raise type(exc)(text) from None


def _api_name(cell: str | None) -> str:
    return "%api" if cell is None else "%%api"


@contextmanager
def _waiting_on(form: Any, what: str) -> Iterator[None]:
    """Around the wait for ``form`` (both drivers): an interrupt becomes the cell's one
    line (:func:`_interrupted`), and the form is closed however the wait ends."""
    try:
        yield
    except KeyboardInterrupt as exc:
        raise _interrupted(form, what, exc) from None
    finally:
        form.close()


def _interrupted(form: Any, what: str, exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """The error of a cell interrupted while ``form`` waited: the form is closed, and the
    cell ends with ``KeyboardInterrupt: %login interrupted while the login form waited:
    not logged in, nothing was stored`` (one line). An :class:`Interrupted` (Ctrl+C in
    the middle of the login's own request or keyring call) says what it stopped: it stays."""
    left = form.interrupted()
    if isinstance(exc, Interrupted):
        return exc
    if what != "%login":
        left += "; the request was not completed"
    return interrupted_wait(f"{what} interrupted while {form.described} waited: {left}")


def _outcome(form: Any, timeout: float, default: Callable[[Any, float], None]) -> None:
    """The end of a wait for a form or panel: success, or SessionExpired saying why not."""
    finish = getattr(form, "outcome", None)  # an OAuth panel knows its own outcomes
    if finish is not None:
        finish(timeout)
    else:
        default(form, timeout)


_OAUTH_OPTIONS = (
    "issuer",
    "client_id",
    "scope",
    "client_secret_env",
    "redirect_port",
    "redirect_uri",
    "token_url",
    "device_url",
    "authorize_url",
    "audience",
    "resource",
)


def _line_options(args: Any) -> dict[str, Any]:
    """The options given on a %login line, by their profile keys (see config.PROFILE_KEYS)."""
    from .config import PROFILE_KEYS

    names = {"base_url": "url", "token_mode": "token"}
    options = {key: getattr(args, names.get(key, key), None) for key in PROFILE_KEYS}
    options["base_url"] = " ".join(args.url).strip() if args.url else None
    return {key: value for key, value in options.items() if value is not None and value is not False}


def _oauth_settings(options: dict[str, Any]) -> Any:
    """The OAuthSettings of ``%login --oauth ...`` (None without --oauth)."""
    if not options.get("oauth"):
        given = [f"--{o.replace('_', '-')}" for o in _OAUTH_OPTIONS if options.get(o) is not None]
        if given:
            raise ProfileError(f"{', '.join(given)} only apply with --oauth device|code|client")
        return None
    if any(options.get(key) for key in ("user", "password_env", "token_mode", "token_env")):
        raise ProfileError(
            "--oauth logs in at the issuer: --user, --password-env, --token and --token-env do not apply"
        )
    from .explore import unquote  # IPython's splitter keeps the quotes of "read write"
    from .oauth import OAuthSettings

    def value(name: str) -> Any:
        raw = options.get(name)
        return unquote(raw) if isinstance(raw, str) else raw

    return OAuthSettings(
        flow=value("oauth"),
        issuer=value("issuer") or "",
        client_id=value("client_id") or "",
        scope=value("scope"),
        client_secret_env=value("client_secret_env"),
        redirect_port=value("redirect_port"),
        redirect_uri=value("redirect_uri"),
        token_url=value("token_url"),
        device_url=value("device_url"),
        authorize_url=value("authorize_url"),
        revoke_url=value("revoke"),
        audience=value("audience"),
        resource=value("resource"),
        allow_http=bool(options.get("allow_http")),
    )


def _positive_seconds(value: Any, what: str, error: type[Exception] = SessionMagicsError) -> float:
    import math

    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise error(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def _byte_size(text: str) -> int:
    """``--max-body`` 500MB, 2GB, 64KB or a number of bytes (1 KB = 1024 bytes)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise SessionMagicsError(f"--max-body takes a size such as 500MB, 2GB or 65536, not {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


async def run_async(kind: str, name: str, line: str, cell: str | None = None) -> Any:
    """What rewritten cells await: the magic ``name`` in its asynchronous form.

    The input transformer (see :mod:`session_magics.waiting`) turns ``%login ...`` and
    ``%%api`` cells into ``await run_async(...)`` on kernels where an awaiting cell lets
    widget messages through, so a login form can be answered while the cell runs.
    """
    magics = _instance
    if magics is None:
        raise SessionMagicsError("session_magics is not loaded: %load_ext session_magics")
    if name == "login":
        return await magics.login_async(line)
    if name == "api":
        return await magics.api_async(line, cell)
    if name == "logout":
        return magics.logout(line)
    raise SessionMagicsError(f"unknown magic {name!r}")


def load(ip: Any) -> None:
    global _instance
    if _instance is not None and _instance.shell is ip:
        return
    magics = SessionMagics(shell=ip, parent=ip)
    ip.register_magics(magics)
    if magics not in ip.configurables:
        ip.configurables.append(magics)
    _instance = magics
    from .result import advance_cell

    for event in ("pre_run_cell", "post_run_cell"):  # the summary line is shown once per cell
        ip.events.register(event, advance_cell)
    from .config import attach

    attach(magics)  # defaults from pyproject.toml / the user config file
    try:
        from . import waiting

        waiting.install_transformer(ip, {"login", "api", "logout"}, "session_magics.magics.run_async")
    except ImportError:  # pragma: no cover - waiting ships with the package
        pass


def unload(ip: Any) -> None:
    global _instance
    try:
        from . import waiting

        waiting.uninstall_transformer(ip)
    except ImportError:  # pragma: no cover
        pass
    from .result import advance_cell

    for event in ("pre_run_cell", "post_run_cell"):
        with contextlib.suppress(ValueError):
            ip.events.unregister(event, advance_cell)
    if _instance is not None:
        for session in _instance.sessions.values():
            session.close()
        if _instance in ip.configurables:
            ip.configurables.remove(_instance)
    _instance = None
