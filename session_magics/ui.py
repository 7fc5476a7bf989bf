"""Asking a person for credentials: the ipywidgets form, a terminal prompt, env vars.

Nothing here keeps a secret: the password is read from its widget (which is
cleared at once, so saved widget state never holds it), handed to
:meth:`ApiSession.login`, and dropped.
"""

from __future__ import annotations

import getpass
import html
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import NoFrontendError, SessionExpired, SessionMagicsError

if TYPE_CHECKING:
    from .session import ApiSession

FORM_CLASS = "session-magics-login"
PENDING_CLICK_SECONDS = 2.0  # a click may arrive just before the password it was meant for


@dataclass
class FormState:
    done: bool = False
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def finished(self) -> bool:
        return self.done or self.cancelled


class LoginForm:
    """The login form: user name, password (or token), Log in, Cancel, a message line."""

    def __init__(self, session: ApiSession, title: str, *, user: str | None = None) -> None:
        import ipywidgets as w

        self.session = session
        self.state = FormState()
        token_mode = session.profile.token_mode
        self.title = w.HTML(f"<b>{html.escape(title)}</b>")
        self.user = w.Text(
            value=user or session.profile.user or "",
            description="User" if not token_mode else "Label",
            placeholder="user name" if not token_mode else "a name for this token (optional)",
        )
        self.secret = w.Password(
            value="",
            description="Token" if token_mode else "Password",
            placeholder="paste the token" if token_mode else "",
        )
        # Where the credentials go, when that is not the API's origin; and the explicit
        # confirmation a project file's endpoint needs (remembered in the user's config).
        self.pending, where = credential_targets(session)
        self.where = w.HTML("<br>".join(html.escape(line) for line in where))
        self.approve: Any = None
        if self.pending:
            origins = ", ".join(p.origin for p in self.pending)
            self.approve = w.Checkbox(
                value=False,
                description=f"Send my credentials to {origins} (remembered for this project)",
                indent=False,
                layout=w.Layout(width="auto"),
            )
            self.approve.observe(self._approved, names="value")
        self.login_button = w.Button(description="Log in", button_style="primary", icon="sign-in")
        self.cancel_button = w.Button(description="Cancel")
        self.message = w.HTML("")
        self.login_button.on_click(self._on_login)
        self.cancel_button.on_click(self._on_cancel)
        # The browser sends the value when the field is left (Tab, Enter or the click
        # on "Log in"). It is taken out of the widget at once, so saved widget state
        # (JupyterLab's saveState) never holds it, not even while the form waits.
        self._typed = ""
        self._login_pending_until = 0.0
        self._approval_pending_until = 0.0
        self.secret.continuous_update = False
        self.secret.observe(self._take_secret, names="value")
        self.widget = w.VBox(
            [
                self.title,
                *([self.where] if where else []),
                *([self.approve] if self.approve is not None else []),
                self.user,
                self.secret,
                w.HBox([self.login_button, self.cancel_button]),
                self.message,
            ]
        )
        self.widget.add_class(FORM_CLASS)

    def is_finished(self) -> bool:
        """Logged in or cancelled: what a wait for this form waits for."""
        return self.state.finished

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#c62828" if error else "#2e7d32"
        self.message.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def _take_secret(self, change: Any) -> None:
        if change["new"]:
            self._typed = change["new"]
            self.secret.value = ""
            if time.monotonic() < self._login_pending_until:
                # The click overtook the value (kernels may dispatch widget messages
                # concurrently): log in now that the secret is here.
                self._on_login()

    def _approved(self, change: Any) -> None:
        if change["new"] and time.monotonic() < self._approval_pending_until:
            self._approval_pending_until = 0.0
            self._on_login()  # the click came just before the tick it was meant with

    def _on_login(self, _button: Any = None) -> None:
        if self.state.finished or not self.state.lock.acquire(blocking=False):
            return
        try:
            if self.approve is not None and not self.approve.value:
                # Nothing is sent without the explicit confirmation; the typed secret waits.
                # (A click may overtake the tick when widget messages are handled concurrently.)
                self._approval_pending_until = time.monotonic() + PENDING_CLICK_SECONDS
                self._say(
                    f"Tick the box to send your credentials to {self.pending[0].origin}, or Cancel.",
                    error=True,
                )
                return
            secret, self._typed = self._typed or self.secret.value, ""
            self._login_pending_until = 0.0
            self.secret.value = ""
            user = self.user.value.strip()
            if not secret:
                self._login_pending_until = time.monotonic() + PENDING_CLICK_SECONDS
                self._say(
                    "Enter the token." if self.session.profile.token_mode else "Enter the password.",
                    error=True,
                )
                return
            self._say("Logging in…")
            try:
                approve_all(self.session, self.pending)
                if self.session.profile.token_mode:
                    token = self.session.use_token(secret, user or None)
                else:
                    token = self.session.login(user, secret)
            except SessionMagicsError as exc:
                self._say(str(exc), error=True)
                return
            finally:
                secret = ""
            self._finish(f"✓ Logged in as {token.user} at {self.session.profile.origin_text}")
        finally:
            self.state.lock.release()

    def _on_cancel(self, _button: Any = None) -> None:
        if self.state.finished:
            return
        self.state.cancelled = True
        self._typed = ""
        self.secret.value = ""
        self._finish("Login cancelled.", error=True)

    def _finish(self, text: str, *, error: bool = False) -> None:
        self.state.done = not error
        for child in (self.user, self.secret, self.login_button, self.cancel_button, self.approve):
            if child is not None:
                child.disabled = True
        self._say(text, error=error)
        if self.session.storage_warning:
            self.message.value += (
                f'<br><span style="color:#ef6c00">{html.escape(self.session.storage_warning)}</span>'
            )

    def close(self) -> None:
        self._typed = ""
        self.secret.value = ""


def outcome(form: LoginForm, timeout: float) -> None:
    """Turn the end of a wait into success or :class:`SessionExpired`."""
    if form.state.done:
        return
    if form.state.cancelled:
        raise SessionExpired(f"Login cancelled: {form.session.profile.describe()} is not logged in.")
    form._finish(f"No login within {timeout:g} s.", error=True)
    raise SessionExpired(
        f"No login within {timeout:g} s for {form.session.profile.describe()} (SessionMagics.login_timeout)."
    )


def credential_targets(session: ApiSession) -> tuple[list[Any], list[str]]:
    """The approvals a login needs, and one line per foreign origin credentials go to:
    "Credentials go to https://login.example.com — set by ./pyproject.toml"."""
    from .profile import format_origin, origin_of

    try:
        pending = session.pending_approvals()
        endpoints = session.profile.credential_endpoints()
    except SessionMagicsError:
        return [], []  # a refused endpoint: the login itself says why
    lines: dict[str, str] = {}
    for endpoint in endpoints:
        origin = origin_of(endpoint.url)
        if origin is None or origin == session.profile.origin:
            continue
        text = format_origin(origin)
        lines.setdefault(text, f"Credentials go to {text} — set by {endpoint.set_by.describe()}")
    return pending, list(lines.values())


def approve_all(session: ApiSession, pending: list[Any]) -> None:
    """Record the user's yes in their config file; a file that cannot be written is an error."""
    for needed in pending:
        try:
            session.trust.approve(needed)
        except OSError as exc:
            raise SessionMagicsError(
                f"could not record the approval in {session.approvals.path}: {exc.strerror or exc}"
            ) from None
        except ValueError as exc:  # tomlkit's ParseError: the file is not valid TOML
            raise SessionMagicsError(
                f"could not record the approval: {session.approvals.path} is not valid TOML ({exc})"
            ) from None


def terminal_login(session: ApiSession, title: str, user: str | None = None) -> None:
    """Prompt on the terminal: user name (if unknown) and password or token via getpass."""
    profile = session.profile
    print(title, file=sys.stderr)
    pending, where = credential_targets(session)
    for line in where:
        print(line, file=sys.stderr)
    if pending:
        origins = ", ".join(p.origin for p in pending)
        try:
            answer = input(f"Send your credentials to {origins}, and remember that for this project? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise SessionExpired(
                f"Not approved: nothing was sent to {origins}; {profile.describe()} is not logged in."
            )
        approve_all(session, pending)
    try:
        if profile.token_mode:
            secret = getpass.getpass(f"Token for {profile.origin_text}: ")
            session.use_token(secret, user or profile.user)
            return
        user = user or profile.user or input(f"User at {profile.origin_text}: ").strip()
        secret = getpass.getpass(f"Password for {user} at {profile.origin_text}: ")
    except (EOFError, KeyboardInterrupt):
        raise SessionExpired(f"Login cancelled: {profile.describe()} is not logged in.") from None
    try:
        session.login(user, secret)
    finally:
        secret = ""


def no_frontend_error(session: ApiSession, title: str) -> NoFrontendError:
    return NoFrontendError(
        f"{title}, but nobody can be asked here: there is no widget frontend (e.g. nbclient or "
        "papermill) and no terminal. For scheduled runs, give the secret through an environment "
        "variable: %login URL --user NAME --password-env VAR (or --token-env VAR)."
    )
