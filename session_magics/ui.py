"""Asking a person for credentials: the ipywidgets form, a terminal prompt, env vars.

Nothing here keeps a secret: the password is read from its widget (which is
cleared at once, so saved widget state never holds it), handed to
:meth:`ApiSession.login`, and dropped.
"""

from __future__ import annotations

import contextlib
import getpass
import html
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import LoginCancelled, NoFrontendError, SessionExpired, SessionMagicsError

if TYPE_CHECKING:
    from .session import ApiSession

FORM_CLASS = "session-magics-login"
#: A click (or Enter) that finds no password yet still logs in when the password's
#: value arrives within this many seconds: kernels may hand the two widget messages
#: to different threads, and the value can come second.
PENDING_CLICK_SECONDS = 2.0

# After the form is replaced by its one line, give the keyboard back to the notebook
# (Shift+Enter must keep working) unless the person has already moved on elsewhere.
_REFOCUS_JS = """
setTimeout(function () {
  var a = document.activeElement;
  if (a && a !== document.body && document.contains(a)) return;
  var nb = (element && element.closest && element.closest('.jp-Notebook')) ||
    document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (nb) nb.focus();
}, 0);
"""


@dataclass
class FormState:
    done: bool = False
    cancelled: bool = False
    timed_out: bool = False
    interrupted: bool = False  # the kernel was interrupted while the form waited

    @property
    def finished(self) -> bool:
        return self.done or self.cancelled or self.timed_out or self.interrupted


@dataclass(frozen=True)
class _Event:
    """What a widget callback saw, on whatever thread the kernel ran it."""

    kind: Literal["secret", "login", "cancel", "approve", "shown"]
    at: float  # time.monotonic() on arrival
    secret: str = field(default="", repr=False)


class _Line:
    """The one line of plain output that replaces a finished form."""

    def __init__(self, text: str, *, error: bool = False, script: str | None = None) -> None:
        self.text = text
        self.error = error
        self.script = script

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        color = "#c62828" if self.error else "#2e7d32"
        lines = "<br>".join(html.escape(part) for part in self.text.split("\n"))
        bundle = {"text/plain": self.text, "text/html": f'<span style="color:{color}">{lines}</span>'}
        if self.script is not None:
            bundle["application/javascript"] = self.script
        return bundle


class LoginForm:
    """The login form: user name, password (or token), Log in, Cancel, a message line.

    Widget callbacks may run on any thread (ipykernel 7 hands comm messages to a
    subshell thread, the click may be handled on the main thread), so they decide
    nothing: each one only records an :class:`_Event` in a thread-safe queue.
    :meth:`step`, called by the waiting loop, takes the events in their order of
    arrival and makes every decision (log in, ask for the password, cancel) in one
    place, on one thread. A click that arrives before the password it was meant for
    is kept pending for :data:`PENDING_CLICK_SECONDS`.

    To add a control (e.g. a confirmation checkbox that must be ticked before the
    password is sent): create the widget in ``__init__``, add it to ``rows``, and
    check it in :meth:`_log_in` before anything is sent (say why with
    :meth:`_say` and return, leaving the form open). Its value may be read there
    directly; only values that arrive as events (the secret) need the queue.

    When the form is done (logged in, cancelled, timed out, interrupted) its output is
    replaced by one line of plain output and its widgets are closed, so a saved
    notebook shows that line and holds no widget the reopened notebook cannot find.
    """

    #: How the one line of an interrupted cell names this form.
    described = "the login form"

    def __init__(self, session: ApiSession, title: str, *, user: str | None = None) -> None:
        import ipywidgets as w

        self.session = session
        self.state = FormState()
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._secret = ""
        self._login_wanted_at: float | None = None  # a click/Enter still waiting for the secret
        self._handle: Any = None  # the DisplayHandle once shown
        self._asked = False  # "Enter the password." said for the pending click
        self.final_line = ""  # the line that replaced the form
        token_mode = session.profile.token_mode
        self.title = w.HTML(f"<b>{html.escape(title)}</b>")
        # continuous_update=False: the name is sent once, when the field is left (Tab, a
        # click) or on Enter, not per keystroke. ipywidgets' frontend holds back a
        # widget's further updates until the kernel has answered the one in flight, while
        # Enter's "submit" and a button's click go out at once: with an update per
        # keystroke, a fast "name, Tab, password, Enter" could reach the kernel as the
        # click first and the rest of the name after it, and log in as "d" instead of "demo".
        self.user = w.Text(
            value=user or session.profile.user or "",
            description="User" if not token_mode else "Label",
            placeholder="user name" if not token_mode else "a name for this token (optional)",
            continuous_update=False,
        )
        # The browser sends the value when the field is left or on Enter (not per
        # keystroke). It is taken out of the widget at once, so saved widget state
        # (JupyterLab's saveState) never holds it, not even while the form waits.
        self.secret = w.Password(
            value="",
            description="Token" if token_mode else "Password",
            placeholder="paste the token" if token_mode else "",
            continuous_update=False,
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
        self.login_button = w.Button(description="Log in", button_style="primary", icon="sign-in")
        self.cancel_button = w.Button(description="Cancel")
        self.message = w.HTML("")
        self.login_button.on_click(lambda _button: self._post("login"))
        self.cancel_button.on_click(lambda _button: self._post("cancel"))
        self.secret.observe(self._take_secret, names="value")
        # Enter in a text field: ipywidgets' frontend sends {"event": "submit"} (before
        # the field's value). on_msg is the widget's public hook for custom messages.
        self.secret.on_msg(self._on_field_msg)
        self.user.on_msg(self._on_field_msg)
        self.buttons = w.HBox([self.login_button, self.cancel_button])
        if self.approve is not None:
            self.approve.observe(self._approved, names="value")
        self._approval_wanted_at: float | None = None
        self.rows: list[Any] = [
            self.title,
            *([self.where] if where else []),
            *([self.approve] if self.approve is not None else []),
            self.user,
            self.secret,
            self.buttons,
            self.message,
        ]
        self.widget = w.VBox(self.rows)
        self.widget.add_class(FORM_CLASS)
        # The keyboard goes to the first empty field when the form appears, so the person
        # can type at once: ipywidgets 8's focus(), sent when the frontend says the field
        # is in the page (a focus message that comes before its view is lost). _view_count
        # is ipywidgets' (experimental) count of a widget's views in the page: set to 0,
        # the frontend counts each view once it is displayed.
        self.first_field = self.user if not self.user.value and not token_mode else self.secret
        self._focused = False
        self._touched = False  # a secret, Enter or a click arrived
        self._user_at_start = self.user.value
        with contextlib.suppress(Exception):
            self.first_field._view_count = 0
            self.first_field.observe(self._field_shown, names="_view_count")

    # -- what the widget callbacks do (any thread): record, never decide ----------

    def _post(self, kind: Literal["secret", "login", "cancel", "approve", "shown"], secret: str = "") -> None:
        if self.state.finished:  # nobody takes events any more: a secret would only be held
            return
        self._events.put(_Event(kind, time.monotonic(), secret))

    def _take_secret(self, change: Any) -> None:
        if change["new"]:
            self._post("secret", change["new"])
            self.secret.value = ""

    def _field_shown(self, change: Any) -> None:
        if change["new"]:
            self._post("shown")

    def _approved(self, change: Any) -> None:
        if change["new"]:
            self._post("approve")

    def _on_field_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self._post("login")

    # -- decisions (the waiting loop's thread) ------------------------------------

    def step(self) -> bool:
        """Handle the events that arrived, in order; return whether the form is done.

        Called by the waiting loop, which is the only place where the form decides.
        """
        while not self.state.finished:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._handle_event(event)
        if not self.state.finished and self._login_wanted_at is not None and not self._secret:
            # Said only after every event that had arrived was taken: a password that
            # came right behind its click (Enter sends the two in that order) is no error.
            if not self._asked:
                self._asked = True
                self._say(
                    "Enter the token." if self.session.profile.token_mode else "Enter the password.",
                    error=True,
                )
        return self.state.finished

    def is_finished(self) -> bool:
        """Logged in, cancelled or timed out (takes the events that arrived first)."""
        return self.step()

    def _handle_event(self, event: _Event) -> None:
        self._touched = self._touched or event.kind != "shown"
        if event.kind == "shown":
            # Once, and only while the person has not started on the form (a late focus
            # would move the keyboard away from what they type).
            if not self._focused and not self._touched and self.user.value == self._user_at_start:
                self._focus()
            self._focused = True
        elif event.kind == "cancel":
            self._forget()
            self.state.cancelled = True
            self._finish("Login cancelled.", error=True, line=False)
        elif event.kind == "approve":
            wanted = self._approval_wanted_at
            self._approval_wanted_at = None
            if wanted is not None and event.at - wanted <= PENDING_CLICK_SECONDS and self._secret:
                self._log_in()  # the click came just before the tick it was meant with
        elif event.kind == "login":
            if self.approve is not None and not self.approve.value:
                # Nothing is sent without the explicit confirmation; the typed secret waits.
                self._approval_wanted_at = event.at
                self._say(
                    f"Tick the box to send your credentials to {self.pending[0].origin}, or Cancel.",
                    error=True,
                )
            elif self._secret:
                self._log_in()
            else:
                self._login_wanted_at = event.at
                self._asked = False
        else:
            self._secret = event.secret
            wanted = self._login_wanted_at
            if wanted is not None and event.at - wanted <= PENDING_CLICK_SECONDS:
                self._log_in()
            self._login_wanted_at = None

    def _log_in(self) -> None:
        secret, self._secret = self._secret, ""
        self._login_wanted_at = None
        user = self.user.value.strip()
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
        self.state.done = True
        profile = self.session.profile
        line = (
            f"✓ Logged in as {token.user} at {profile.origin_text} (token {token.describe_expiry()})"
        )
        if profile.name != profile.origin_text:
            line += f" — profile {profile.name!r}"
        from .trust import credentials_note

        self._finish(line + credentials_note(self.session))

    def _forget(self) -> None:
        self._secret = ""
        self._login_wanted_at = None
        with contextlib.suppress(queue.Empty):
            while True:
                self._events.get_nowait()
        self.secret.value = ""

    # -- showing ------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._handle = display(self.widget, display_id=True)

    def _focus(self) -> None:
        with contextlib.suppress(Exception):  # a frontend without widget views: nothing to do
            self.first_field.focus()

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#c62828" if error else "#2e7d32"
        self.message.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def _finish(self, text: str, *, error: bool = False, line: bool = True) -> None:
        """Replace the form by one line of plain output and close its widgets.

        ``line=False`` (cancelled, timed out): the form leaves no line of its own, as the
        error that ends the cell says it (one line, not the same news twice)."""
        if self.session.storage_warning:
            text += f"\nWarning: {self.session.storage_warning}"
        self.final_line = text if line else ""
        for child in (self.user, self.secret, self.login_button, self.cancel_button, self.approve):
            if child is not None:
                child.disabled = True
        if self._handle is None:  # not shown through IPython's display: say it in the form
            self._say(text, error=error)
        else:
            with contextlib.suppress(Exception):
                self._handle.update(_Line(self.final_line, error=error, script=_REFOCUS_JS))
                self._handle.update(_Line(self.final_line, error=error))
            # self.where too: made for every form, shown only when it has something to say
            for widget in (*self.buttons.children, *self.rows, self.where, self.widget):
                with contextlib.suppress(Exception):
                    widget.close()

    def close(self) -> None:
        """Drop whatever secret is still held (the wait is over, whatever its end)."""
        self._forget()

    def interrupted(self) -> str:
        """The kernel was interrupted while the form waited: the form is replaced by its
        line and its widgets are closed (a password typed afterwards goes nowhere), and
        what it held is dropped. Returns what that left, for the cell's one line."""
        if self.state.done:  # the interrupt came after the login
            return "the login had completed"
        self.state.interrupted = True  # from now on no event is taken
        # No line of its own: the cell's KeyboardInterrupt line says it (as for a cancel).
        self._finish("Login interrupted: not logged in.", error=True, line=False)
        self._forget()
        return "not logged in, nothing was stored"


def outcome(form: LoginForm, timeout: float) -> None:
    """Turn the end of a wait into success or :class:`SessionExpired`."""
    if form.state.done:
        return
    if form.state.cancelled:
        raise cancelled(form.session)
    form.state.timed_out = True
    form._finish(f"No login within {timeout:g} s.", error=True, line=False)
    raise SessionExpired(
        f"No login within {timeout:g} s for {form.session.profile.describe()} (SessionMagics.login_timeout)."
    )


def credential_targets(session: ApiSession) -> tuple[list[Any], list[str]]:
    """The approvals a login needs, and one line per foreign origin credentials go to:
    "Credentials go to https://login.example.com — set by ./pyproject.toml"."""
    from .trust import foreign_endpoints

    try:
        pending = session.pending_approvals()
        endpoints = session.credential_endpoints()
    except SessionMagicsError:
        return [], []  # a refused endpoint: the login itself says why
    lines: dict[str, str] = {}
    for text, _, endpoint in foreign_endpoints(endpoints, session.profile.origin):
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


def terminal_approval(session: ApiSession) -> None:
    """Say where credentials go; when a project file chose an origin not approved yet, ask
    ``[y/N]`` and record the yes (a no, or no answer: :class:`SessionExpired`, nothing sent)."""
    pending, where = credential_targets(session)
    for line in where:
        print(line, file=sys.stderr)
    if not pending:
        return
    origins = ", ".join(p.origin for p in pending)
    try:
        answer = input(f"Send your credentials to {origins}, and remember that for this project? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)  # the prompt's line ends here, not in the message after it
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise SessionExpired(
            f"Not approved: nothing was sent to {origins}; {session.profile.describe()} is not logged in."
        )
    approve_all(session, pending)


def terminal_login(session: ApiSession, title: str, user: str | None = None) -> None:
    """Prompt on the terminal: user name (if unknown) and password or token via getpass."""
    profile = session.profile
    print(title, file=sys.stderr)
    terminal_approval(session)
    try:
        if profile.token_mode:
            secret = getpass.getpass(f"Token for {profile.origin_text}: ")
        else:
            user = user or profile.user or input(f"User at {profile.origin_text}: ").strip()
            secret = getpass.getpass(f"Password for {user} at {profile.origin_text}: ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)  # getpass ends the prompt's line only when it gets an answer
        raise cancelled(session) from None
    # Cleared whatever happens: a traceback (IPython keeps the last one for %debug)
    # holds this frame and its locals.
    try:
        if profile.token_mode:
            session.use_token(secret, user or profile.user)
        else:
            session.login(user or "", secret)  # a name was asked for above
    finally:
        secret = ""


def cancelled(session: ApiSession) -> LoginCancelled:
    """The error a cancelled login ends its cell with (the one line that says so)."""
    return LoginCancelled(f"{who(session.profile)} is not logged in (run the cell again to log in).")


def who(profile: Any) -> str:
    """``demo at http://127.0.0.1:8765``, or the origin alone when no user is known."""
    return profile.describe() if profile.user else profile.origin_text


def no_frontend_error(session: ApiSession, title: str) -> NoFrontendError:
    return NoFrontendError(
        f"{title}, but nobody can be asked here: there is no widget frontend (e.g. nbclient or "
        "papermill) and no terminal. For scheduled runs, give the secret through an environment "
        "variable: %login URL --user NAME --password-env VAR (or --token-env VAR)."
    )
