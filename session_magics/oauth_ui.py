"""The person's part of an OAuth login: panels in the cell, lines in a terminal.

* **device**: the panel shows the verification link and the user code (large, and
  selectable with one click), a countdown and Cancel; a terminal gets the link and
  the code printed, then the kernel polls.
* **code**: the panel has a "Sign in" link to the provider and, for kernels whose
  loopback port the browser cannot reach, a field to paste the address the browser
  was sent to; a terminal gets the link printed and opened with :mod:`webbrowser`
  (which honours ``$BROWSER``).
* **client**: nothing to show: the token is requested at once.

Where nobody can answer (nbclient, papermill), device and code logins fail at once
with a message that says what works there.
"""

from __future__ import annotations

import contextlib
import html
import sys
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .errors import NoFrontendError, SessionExpired

if TYPE_CHECKING:
    from .oauth import CodeLogin, DeviceLogin, OAuthSession, PendingLogin

PANEL_CLASS = "session-magics-oauth"


def ask(session: OAuthSession, title: str) -> Generator[Any, None, None]:
    """Log ``session`` in; yields a panel when the caller has to wait for a person (an
    approval panel first, when a project file chose an issuer not approved yet)."""
    from . import waiting

    flow = session.settings.flow
    kind = waiting.frontend()
    yield from approvals(session, title, kind)
    if flow == "client":
        session.login_client()
        return
    if kind == "none":
        raise no_person_error(session, title)
    login: PendingLogin = session.device_login().begin() if flow == "device" else session.code_login().begin()
    if kind == "widgets":
        panel = DevicePanel(login, title) if flow == "device" else CodePanel(login, title)  # type: ignore[arg-type]
        login.start_in_thread()
        from IPython.display import display

        display(panel)
        panel.start_countdown()
        yield panel
    else:
        terminal_login(login, title)


def approvals(session: OAuthSession, title: str, kind: str) -> Generator[Any, None, None]:
    """Make sure every origin this login sends credentials to may receive them.

    First the issuer and the endpoints given as options (nothing, not even discovery, is
    requested from an issuer waiting for approval), then what discovery adds. Each origin
    a project file chose and the user has not approved is asked for: the approval panel
    (yielded), ``[y/N]`` in a terminal, or :class:`~session_magics.errors.ApprovalNeeded`
    where nobody can answer."""
    from .ui import terminal_approval

    asked: set[str] = set()
    while True:
        pending = session.pending_approvals()
        if not pending:
            if session.discovered:
                return
            session.endpoints  # noqa: B018 (discovery, now that the issuer may be asked)
            continue
        origins = {p.origin for p in pending}
        if kind not in ("widgets", "terminal") or origins & asked:
            raise pending[0]  # nobody to ask (or a yes that did not stick): send nothing
        asked |= origins
        if kind == "widgets":
            from IPython.display import display

            panel = ApprovalPanel(session, title, pending)
            display(panel)
            yield panel
        else:
            print(title, file=sys.stderr)
            terminal_approval(session)


def no_person_error(session: OAuthSession, title: str) -> NoFrontendError:
    flow = session.settings.flow
    return NoFrontendError(
        f"{title}: --oauth {flow} needs a person to "
        + ("approve the login in a browser" if flow == "device" else "sign in in a browser")
        + ", and nobody can be asked here (no widget frontend, e.g. nbclient or papermill, and no terminal). "
        "Scheduled runs: use --oauth client with --client-secret-env VAR, or log in once interactively "
        "so that a refresh token is in the keyring."
    )


def terminal_login(login: PendingLogin, title: str, timeout: float | None = None) -> None:
    """Print what the person needs, then wait (Ctrl+C cancels)."""
    from .oauth import DeviceLogin

    print(title, file=sys.stderr)
    if isinstance(login, DeviceLogin):
        print(f"Open {login.link}", file=sys.stderr)
        print(f"and enter the code: {login.user_code}", file=sys.stderr)
        left = login.seconds_left()
        if left is not None:
            print(f"(the code expires in {int(left // 60)} min {int(left % 60)} s)", file=sys.stderr)
    else:
        url = login.authorize_url  # type: ignore[attr-defined]
        print(f"Sign in at: {url}", file=sys.stderr)
        try:
            import webbrowser

            webbrowser.open(url)
        except Exception:
            pass
    if timeout is None:
        from .magics import _instance

        timeout = _instance.login_timeout if _instance is not None else 300.0
    login.start_in_thread()
    try:
        login.wait(timeout)
    except KeyboardInterrupt:
        login.cancel()
        from .ui import cancelled

        raise cancelled(login.session) from None
    login.outcome(timeout)


def _vanish(handle: Any, widget: Any) -> None:
    """Replace a finished panel by an empty output and close its widgets. The magic's
    "Logged in" line, or the cell's one error line, says how it ended; and a saved
    notebook holds no widget view that the reopened notebook could not find (as for
    the login form, :meth:`session_magics.ui.LoginForm._finish`)."""
    from .ui import _Line

    if handle is not None:
        with contextlib.suppress(Exception):
            handle.update(_Line(""))
    stack = [widget]
    while stack:
        item = stack.pop()
        stack.extend(getattr(item, "children", ()))
        with contextlib.suppress(Exception):
            item.close()


def _countdown(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"expires in {seconds // 60}:{seconds % 60:02d}"


class _Panel:
    """What the magics' wait needs: ``is_finished``, ``close``, ``outcome``."""

    announces = False  # the panel goes; the magic prints the "Logged in" line
    described = "the sign-in panel"  # how the one line of an interrupted cell names it

    def __init__(self, login: PendingLogin, title: str) -> None:
        import ipywidgets as w

        self.login = login
        self.session = login.session
        self.title = w.HTML(f"<b>{html.escape(title)}</b>")
        self.countdown = w.HTML("")
        self.message = w.HTML("")
        self.cancel_button = w.Button(description="Cancel")
        self.cancel_button.on_click(self._on_cancel)
        self._ticker: threading.Thread | None = None
        self._handle: Any = None  # the DisplayHandle once shown

    def is_finished(self) -> bool:
        return self.login.done.is_set()

    def start_countdown(self) -> None:
        """Refresh the countdown every second until the login ends."""

        def tick() -> None:
            while not self.login.done.wait(1.0):
                self.countdown.value = html.escape(_countdown(self.login.seconds_left()))

        self.countdown.value = html.escape(_countdown(self.login.seconds_left()))
        self._ticker = threading.Thread(target=tick, name="session-magics-countdown", daemon=True)
        self._ticker.start()

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#c62828" if error else "#2e7d32"
        self.message.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def _on_cancel(self, _button: Any = None) -> None:
        self.login.cancel()

    def _disable(self) -> None:
        self.cancel_button.disabled = True

    def close(self) -> None:
        if not self.login.done.is_set():
            self.login.abandon()
        self.countdown.value = ""
        self._disable()

    def interrupted(self) -> str:
        """The kernel was interrupted while the panel waited: the login is abandoned, the
        panel says so and is disabled. Returns what that left, for the cell's one line."""
        if self.login.token is not None:
            return "the login had completed"
        self.close()
        _vanish(self._handle, self.widget)  # the cell's KeyboardInterrupt line says it
        return "the login was abandoned"

    def outcome(self, timeout: float) -> None:
        """Logged in (the magic says so), or :class:`SessionExpired` saying why not; the
        panel is gone either way."""
        try:
            if self.login.token is None:
                self.login.outcome(timeout)
        finally:
            _vanish(self._handle, self.widget)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._handle = display(self.widget, display_id=True)

    widget: Any


class DevicePanel(_Panel):
    """Link, user code, countdown, Cancel."""

    described = "the device code panel"

    def __init__(self, login: DeviceLogin, title: str) -> None:
        import ipywidgets as w

        super().__init__(login, title)
        link = html.escape(login.link, quote=True)
        code = html.escape(login.user_code)
        self.instructions = w.HTML(
            f'<div>Open <a href="{link}" target="_blank" rel="noopener noreferrer">{link}</a>'
            + (" and confirm the code" if login.verification_uri_complete else " and enter the code")
            + f'</div><div class="session-magics-user-code" style="font-size:1.8em;font-family:monospace;'
            f'letter-spacing:0.1em;user-select:all;margin:0.3em 0">{code}</div>'
        )
        self.widget = w.VBox(
            [self.title, self.instructions, w.HBox([self.cancel_button, self.countdown]), self.message]
        )
        self.widget.add_class(PANEL_CLASS)


class CodePanel(_Panel):
    """A "Sign in" link, a field for a pasted redirect address, Cancel."""

    def __init__(self, login: CodeLogin, title: str) -> None:
        import ipywidgets as w

        super().__init__(login, title)
        url = html.escape(login.authorize_url, quote=True)
        self.sign_in = w.HTML(
            f'<a class="session-magics-sign-in" href="{url}" target="_blank" rel="noopener noreferrer" '
            'style="display:inline-block;padding:0.3em 1em;background:#1976d2;color:white;'
            'border-radius:3px;text-decoration:none">Sign in</a>'
        )
        # Sent when the field is left (the click on "Use address"), not per keystroke: see
        # the user name field of ui.LoginForm for why a per-keystroke value can come late.
        self.pasted = w.Text(
            continuous_update=False,
            placeholder="remote kernel? paste the address the browser showed after signing in",
            layout=w.Layout(width="32em"),
        )
        self.use_button = w.Button(description="Use address")
        self.use_button.on_click(self._on_paste)
        self.widget = w.VBox(
            [
                self.title,
                w.HBox([self.sign_in, self.cancel_button, self.countdown]),
                w.HBox([self.pasted, self.use_button]),
                self.message,
            ]
        )
        self.widget.add_class(PANEL_CLASS)

    def _on_paste(self, _button: Any = None) -> None:
        text, self.pasted.value = self.pasted.value, ""  # it holds the code: not kept in the widget
        if not text.strip():
            return
        if not self.login.complete(text):  # type: ignore[attr-defined]
            self._say("That is not the address of this sign-in (its state does not match).", error=True)

    def _disable(self) -> None:
        super()._disable()
        self.use_button.disabled = True
        self.pasted.disabled = True


class ApprovalPanel:
    """ "Credentials go to ORIGIN — set by ./pyproject.toml", a checkbox that approves (and
    remembers) it, Cancel. Widget callbacks only record events; :meth:`is_finished`, called
    by the waiting loop, decides (records the approval) on one thread."""

    announces = False  # the login that follows says "Logged in"
    described = "the approval panel"

    def __init__(self, session: OAuthSession, title: str, pending: list[Any]) -> None:
        import queue

        import ipywidgets as w

        from .ui import credential_targets

        self.session = session
        self.pending = pending
        self.approved = False
        self.cancelled = False
        self._handle: Any = None  # the DisplayHandle once shown
        self._events: queue.SimpleQueue[str] = queue.SimpleQueue()
        _, where = credential_targets(session)
        origins = ", ".join(p.origin for p in pending)
        self.title = w.HTML(f"<b>{html.escape(title)}</b>")
        self.where = w.HTML("<br>".join(html.escape(line) for line in where))
        self.approve = w.Checkbox(
            value=False,
            description=f"Send my credentials to {origins} (remembered for this project)",
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.cancel_button = w.Button(description="Cancel")
        self.message = w.HTML("")
        self.approve.observe(self._ticked, names="value")
        self.cancel_button.on_click(lambda _button: self._events.put("cancel"))
        self.widget = w.VBox([self.title, self.where, self.approve, self.cancel_button, self.message])
        self.widget.add_class(PANEL_CLASS)

    def _ticked(self, change: Any) -> None:  # any thread: record only
        if change["new"]:
            self._events.put("approve")

    def step(self) -> bool:
        import queue

        from .errors import SessionMagicsError
        from .ui import approve_all

        while not (self.approved or self.cancelled):
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event == "cancel":
                self.cancelled = True
            else:
                try:
                    approve_all(self.session, self.pending)
                except SessionMagicsError as exc:  # the config file cannot be written
                    self._say(str(exc), error=True)
                    self.approve.value = False
                    continue
                self.approved = True
        return self.approved or self.cancelled

    def is_finished(self) -> bool:
        return self.step()

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#c62828" if error else "#2e7d32"
        self.message.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def close(self) -> None:
        self.approve.disabled = True
        self.cancel_button.disabled = True

    def interrupted(self) -> str:
        """The kernel was interrupted while the panel waited (see :meth:`_Panel.interrupted`)."""
        self.close()
        _vanish(self._handle, self.widget)
        if self.approved:
            return "the approval was recorded, not logged in"
        self.cancelled = True  # from now on no tick is taken
        origins = ", ".join(p.origin for p in self.pending)
        return f"nothing was sent to {origins}"

    def outcome(self, timeout: float) -> None:
        """Approved (the sign-in follows; the magic's line names the origin), or
        :class:`SessionExpired` saying that nothing was sent; the panel is gone either way."""
        _vanish(self._handle, self.widget)
        if self.approved:
            return
        origins = ", ".join(p.origin for p in self.pending)
        who = self.session.profile.describe()
        if self.cancelled:
            raise SessionExpired(f"Not approved: nothing was sent to {origins}; {who} is not logged in.")
        raise SessionExpired(
            f"No answer within {timeout:g} s: nothing was sent to {origins}; {who} is not logged in."
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._handle = display(self.widget, display_id=True)
