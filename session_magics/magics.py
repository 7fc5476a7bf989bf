"""The IPython magics: a thin layer of argument parsing and display over the core.

``%login``, ``%logout`` and ``%%api`` / ``%api``. All settings are traitlets, so
``%config SessionMagics`` lists them and ``%config SessionMagics.timeout = 60``
changes them.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Float, Int, List, Unicode, observe

from .errors import Interrupted, ProfileError, SessionMagicsError
from .redact import sealed

if TYPE_CHECKING:
    from .result import ApiResult
    from .session import ApiSession, NeedLogin
    from .store import TokenStore

_instance: SessionMagics | None = None


def _render_traceback(self: SessionMagicsError) -> list[str]:
    """Shown by IPython instead of a traceback: our errors are messages, not crashes."""
    red, reset = "\x1b[0;31m", "\x1b[0m"
    return [f"{red}{type(self).__name__}{reset}: {self}"]


SessionMagicsError._render_traceback_ = _render_traceback  # type: ignore[attr-defined]
# Ctrl+C inside a request: one line too (the frames it passed through hold the headers).
Interrupted._render_traceback_ = _render_traceback  # type: ignore[attr-defined]


@magics_class
class SessionMagics(Magics):
    """Log in to token-protected HTTP APIs and explore them from IPython."""

    timeout = Float(30.0, help="Default timeout of a request, in seconds.").tag(config=True)
    login_timeout = Float(300.0, help="How long a login form or prompt waits for the user, in seconds.").tag(
        config=True
    )
    leeway = Float(30.0, help="Refresh a token this many seconds before it expires.").tag(config=True)
    use_keyring = Bool(
        True, help="Keep tokens in the OS keyring. False: in memory for this kernel only."
    ).tag(config=True)
    keyring_timeout = Float(10.0, help="Longest wait for one keyring call, in seconds.").tag(config=True)

    @observe("keyring_timeout")
    def _keyring_timeout_changed(self, change: Any) -> None:
        store = getattr(self, "_keyring_store", None)
        if store is not None:  # a %config after the first %login applies too
            store.timeout = change["new"]

    @observe("timeout", "leeway")
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

    def _ask(self, session: ApiSession, title: str) -> Generator[Any, None, None]:
        """Get a login for ``session``: env var, form, terminal prompt, or a clear error.

        A generator so one decision serves both drivers: it yields the form when the
        caller has to wait for it (synchronously or with ``await``).
        """
        note = self._login_env(session)
        if note is None:
            return
        from . import waiting
        from .ui import LoginForm, no_frontend_error, terminal_login

        kind = waiting.frontend()
        if kind == "widgets":
            form = LoginForm(session, title)
            self._display(form)
            yield form
        elif kind == "terminal":
            terminal_login(session, title)
        else:
            raise no_frontend_error(session, f"{title} ({note})" if note else title)

    def _ask_sync(self, session: ApiSession, title: str) -> bool:
        """Returns whether a form was answered (its output already says "Logged in")."""
        for form in self._ask(session, title):
            from . import waiting
            from .ui import outcome

            try:
                waiting.wait_for(form.is_finished, self.login_timeout)
            finally:
                form.close()
            outcome(form, self.login_timeout)
            return True
        return False

    async def _ask_async(self, session: ApiSession, title: str) -> bool:
        for form in self._ask(session, title):
            from . import waiting
            from .ui import outcome

            try:
                await waiting.wait_for_async(form.is_finished, self.login_timeout)
            finally:
                form.close()
            outcome(form, self.login_timeout)
            return True
        return False

    # ---------------------------------------------------------------- %login
    def _profile_from_args(self, args: Any) -> Any:
        from .config import login_args
        from .profile import Profile
        from .tokens import FieldNames

        args = login_args(self, args)  # completed from a configured profile (--profile NAME)
        url = " ".join(args.url).strip() if args.url else ""
        name = args.profile
        if not url:
            if name and name in self.sessions:
                return None
            if self.default_profile and not name:
                return None
            raise ProfileError("give the API's base URL: %login https://api.example.com")
        scheme = args.scheme
        if scheme is not None and scheme.lower() in ("", "none"):
            scheme = ""
        try:
            statuses = (
                frozenset(int(s) for s in args.expired_status.split(","))
                if args.expired_status
                else frozenset(int(s) for s in self.expired_statuses)
            )
        except ValueError:
            raise ProfileError("--expired-status takes numbers, e.g. 401,403") from None
        profile = Profile(
            name="",
            base_url=url,
            user=args.user,
            login=args.login or self.login_path,
            refresh=args.refresh,
            revoke=args.revoke,
            body=args.body or "form",
            scheme=scheme,
            header=args.header or "Authorization",
            token_mode=bool(args.token or args.token_env),
            fields=FieldNames(args.access_field, args.refresh_field, args.expires_field),
            expired_statuses=statuses,
            allow_http=args.allow_http,
            use_keyring=self.use_keyring and not args.no_keyring,
            password_env=args.password_env,
            token_env=args.token_env,
        )
        profile.name = name or profile.origin_text
        return profile

    def _session_for(self, profile: Any) -> ApiSession:
        from .session import ApiSession

        old = self.sessions.get(profile.name)
        if old is not None and old.profile == profile:
            return old
        if old is not None:
            old.close()
        session = ApiSession(
            profile, self.store(profile.use_keyring), timeout=self.timeout, leeway=self.leeway
        )
        if old is not None:
            session.take_over(old)  # e.g. %login URL again: keep a token held only in memory
        self.sessions[profile.name] = session
        return session

    def _login_prepare(self, line: str) -> tuple[Any, ApiSession | None]:
        from .request import interpolate

        args = parse_argstring(self.login, interpolate(line, self._evaluate))
        if args.status:
            self._print_status()
            return args, None
        profile = self._profile_from_args(args)
        session = self._session_for(profile) if profile else self.session(args.profile)
        if not session.profile.use_keyring:
            print(
                "Note: --no-keyring: the token is kept in memory only and is lost when the kernel stops.",
                file=sys.stderr,
            )
        return args, session

    def _already(self, args: Any, session: ApiSession) -> bool:
        if args.force:
            return False
        token = session.token
        if token is None:
            return False
        if token.is_expired(self.leeway):
            if not token.refresh_token or session.refresh(stale=token) is None:
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
        msg = f"{verb} as {token.user} at {where} (token expires {token.describe_expiry()})"
        if session.profile.name != where:
            msg += f" — profile {session.profile.name!r}"
        print(msg)
        if session.storage_warning:
            print(f"Warning: {session.storage_warning}", file=sys.stderr)

    @magic_arguments()
    @argument("url", nargs="*", help="The API's base URL, e.g. https://api.example.com/v1")
    @argument(
        "--profile",
        help="Name this API (several can live side by side), or use a profile configured in "
        "pyproject.toml [tool.session_magics.profiles.NAME]. Default: its origin.",
    )
    @argument("--user", help="User name (asked for when missing).")
    @argument("--login", metavar="PATH_OR_URL", help="Token endpoint (default: auth/token).")
    @argument("--refresh", metavar="PATH_OR_URL", help="Refresh endpoint (default: the token endpoint).")
    @argument("--revoke", metavar="PATH_OR_URL", help="Revocation endpoint, called by %%logout.")
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
        help="Statuses meaning 'token no longer valid', e.g. 401,403 (default: 401).",
    )
    @argument(
        "--allow-http",
        action="store_true",
        help="Allow plain http to a host other than this machine (tokens travel unencrypted).",
    )
    @argument(
        "--no-keyring",
        action="store_true",
        help="Keep the token in memory for this kernel only, not in the OS keyring.",
    )
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
        a Python value, as in %%api. ::

            %login http://127.0.0.1:8765 --user demo
            %login {{API_URL}} --user demo --password-env DEMO_PASSWORD
            %login https://api.example.com --token --header X-API-Key
            %login https://api.example.com --user bot --password-env API_PASSWORD
            %login --status
        """
        args, session = self._login_prepare(line)
        if session is None or self._already(args, session):
            return
        shown = self._ask_sync(session, f"Log in to {session.profile.origin_text}")
        self._logged_in(session, announce=not shown)

    async def login_async(self, line: str = "") -> None:
        args, session = self._login_prepare(line)
        if session is None or self._already(args, session):
            return
        shown = await self._ask_async(session, f"Log in to {session.profile.origin_text}")
        self._logged_in(session, announce=not shown)

    def _print_status(self) -> None:
        from .config import add_configured_sessions, source_note

        add_configured_sessions(self)  # configured profiles are listed too
        if not self.sessions:
            print("No profiles yet: %login BASE_URL")
            return
        rows = []
        for name, session in self.sessions.items():
            try:
                token = session.token
                state = (
                    f"{token.user}, token expires {token.describe_expiry()}"
                    + (", refreshable" if token.refresh_token else "")
                    if token
                    else "not logged in"
                )
            except SessionMagicsError as exc:
                state = f"unknown ({exc})"
            mark = "*" if name == self.default_profile else " "
            rows.append(
                f"{mark} {name}: {session.profile.base_url} — {state} — {session.store.description}"
                + source_note(self, name)
            )
        print("\n".join(rows))

    # --------------------------------------------------------------- %logout
    @magic_arguments()
    @argument("--profile", help="The profile to log out of (default: the current one).")
    @no_var_expand
    @line_magic
    def logout(self, line: str = "") -> None:
        """Log out: revoke the token (if the API has a revoke endpoint), delete it from the
        keyring and from memory."""
        args = parse_argstring(self.logout, line)
        session = self.session(args.profile)
        notes = session.logout()
        for note in notes:
            print(f"Note: {note}", file=sys.stderr)
        print(f"Logged out of {session.profile.origin_text}; the stored token was deleted.")

    # ------------------------------------------------------------------ %%api
    def _api_prepare(self, line: str, cell: str | None) -> tuple[Any, ApiSession | None, dict[str, Any]]:
        from .profile import origin_of
        from .request import parse_request

        args = _parse_remembered(self.api, line)
        if cell is None:
            text = " ".join(args.request)
            if not text.strip():
                raise SessionMagicsError("give a request: %api GET /path (or use %%api as a cell magic)")
        else:
            if args.request:
                raise SessionMagicsError(
                    f"unexpected {' '.join(args.request)!r} after %%api: the request goes on the next line"
                )
            text = cell
        spec = parse_request(text, self._evaluate)
        absolute = origin_of(spec.url) is not None
        # No profile at all and an absolute URL: a plain request, no token anywhere.
        plain = absolute and not args.profile and self.default_profile is None
        session = None if plain else self.session(args.profile)
        kwargs: dict[str, Any] = dict(
            headers=spec.headers,
            body=spec.body.encode("utf-8") if spec.body is not None else None,
            timeout=args.timeout,
            auth=not args.no_auth,
        )
        if spec.body is not None and spec.header("Content-Type") is None:
            kwargs["headers"] = spec.headers + [
                ("Content-Type", "application/json" if spec.json_body else "text/plain; charset=utf-8")
            ]
        kwargs["method"], kwargs["url"] = spec.method, spec.url
        if args.save:
            if getattr(args, "all", False) or getattr(args, "df", False) or getattr(args, "extract", None):
                raise SessionMagicsError("--save writes one answer to a file: not with --all/--df/--extract")
            kwargs["stream"] = True  # the body is read in chunks by ApiResult.save, never whole
        return args, session, kwargs

    def _api_flow(self, args: Any, session: ApiSession, kwargs: dict[str, Any]) -> Generator[Any, None, Any]:
        """The renewal flow of the request, or with --all of every page (see pagination.py)."""
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
            **kwargs,
        )

    def _plain_request(self, kwargs: dict[str, Any], args: Any = None) -> ApiResult:
        """A request with no profile at all (an absolute URL before any %login)."""
        from .profile import Profile, format_origin, origin_of
        from .session import ApiSession, drive

        where = origin_of(kwargs["url"])
        origin = format_origin(where) if where else kwargs["url"]
        session = ApiSession(
            Profile(name="", base_url=origin, allow_http=True), self.store(False), timeout=self.timeout
        )
        try:
            return drive(self._api_flow(args, session, {**kwargs, "auth": False}), session._no_login)
        finally:
            session.close()

    def _api_finish(self, args: Any, result: ApiResult) -> Any:
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
        if value is not result or result.json_tree:  # a display that cannot carry the summary line
            self._display(_SummaryLine(result.summary()))
        return value

    def _save(self, path: str, result: ApiResult) -> None:
        """--save FILE: stream the body to FILE (successful answers only)."""
        from .result import _size

        if not result.ok:
            print(f"Nothing saved to {path}: the server answered {result.status_code}.", file=sys.stderr)
            return
        size = result.save(path)
        print(f"Saved {_size(size)} to {result.saved_to}")

    @magic_arguments()
    @argument("request", nargs="*", help="Line form only: the request, e.g. GET /users")
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
    @argument("--timeout", type=float, help="Timeout in seconds (default: SessionMagics.timeout).")
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
        "--cursor-param",
        metavar="NAME",
        help="With --all: the query parameter that sends a cursor back (default: cursor).",
    )
    @argument(
        "--next",
        dest="next_expr",
        metavar="EXPR",
        help="With --all: a JMESPath expression giving the next page's URL, number or cursor.",
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
        """
        from .session import drive

        args, session, kwargs = self._api_prepare(line, cell)
        if session is None:
            return self._api_finish(args, self._plain_request(kwargs, args))
        flow = self._api_flow(args, session, kwargs)

        def ask(need: NeedLogin) -> None:
            self._ask_sync(session, self._title(need))

        result = drive(flow, ask)
        return self._api_finish(args, result)

    async def api_async(self, line: str = "", cell: str | None = None) -> ApiResult | None:
        args, session, kwargs = self._api_prepare(line, cell)
        if session is None:
            return self._api_finish(args, self._plain_request(kwargs, args))
        flow = self._api_flow(args, session, kwargs)

        async def ask(need: NeedLogin) -> None:
            await self._ask_async(session, self._title(need))

        result = await drive_async(flow, ask)
        return self._api_finish(args, result)


_PARSED: dict[tuple[str, str], Any] = {}


def _parse_remembered(magic: Any, line: str) -> Any:
    """``parse_argstring``, remembered per line: a notebook sends the same options again
    and again, and argparse costs more than the rest of a request's own work."""
    import argparse

    key = (magic.__name__, line)
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = parse_argstring(magic, line)
        if len(_PARSED) >= 256:
            _PARSED.clear()
        _PARSED[key] = parsed
    # A copy (lists too): callers may change theirs without changing the remembered one.
    return argparse.Namespace(**{k: list(v) if isinstance(v, list) else v for k, v in vars(parsed).items()})


class _SummaryLine:
    """The one-line summary of a request, shown above a JSON tree, a DataFrame or an extract."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        return {
            "text/plain": self.text,
            "text/html": f'<div style="font-family:monospace">{html.escape(self.text)}</div>',
        }


@sealed()  # as session.drive: no traceback reaches the frames of the flow (they hold the token)
async def drive_async(flow: Generator[Any, None, Any], on_login: Callable[[Any], Awaitable[None]]) -> Any:
    """The asynchronous driver of a renewal flow (the twin of :func:`session.drive`)."""
    try:
        need = next(flow)
        while True:
            await on_login(need)
            need = flow.send(None)
    except StopIteration as stop:
        return stop.value


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
    if _instance is not None:
        for session in _instance.sessions.values():
            session.close()
        if _instance in ip.configurables:
            ip.configurables.remove(_instance)
    _instance = None
