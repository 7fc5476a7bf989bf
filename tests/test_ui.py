"""The login form's behaviour in the kernel (the browser side is in tests/e2e).

Events reach the form the way the kernel delivers them: through the widgets
(a value set on the Password widget, a Button click, a "submit" custom message),
on whatever thread; the decisions are taken by the waiting loop (``step``).
"""

from __future__ import annotations

import threading

import pytest

from session_magics import waiting
from session_magics.demo import DemoServer
from session_magics.errors import LoginCancelled, SessionExpired
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import MemoryStore
from session_magics.ui import FORM_CLASS, LoginForm, outcome

PASSWORD = "right-password"
# A bound on how long a test waits for a login that should happen; reaching it
# means the login was lost (the test fails), it does not measure speed.
LOST = 30.0


@pytest.fixture
def session():
    with DemoServer(password=PASSWORD) as api:
        yield ApiSession(Profile(name="d", base_url=api.url, user="demo", use_keyring=False), MemoryStore())


def type_password(form, text):
    form.secret.value = text  # what the browser's value message does


def press_enter(field):
    field._handle_custom_msg({"event": "submit"}, [])  # what the browser sends on Enter


def on_thread(action) -> None:
    """Run ``action`` on another thread (as a kernel subshell would) and wait for it."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert not errors, errors


def test_password_leaves_the_widget_at_once(session):
    form = LoginForm(session, "Log in")
    assert FORM_CLASS in form.widget._dom_classes
    type_password(form, PASSWORD)
    assert form.secret.value == ""  # nothing for saved widget state to keep
    assert form.secret.get_state()["value"] == ""
    assert PASSWORD not in repr(form._events.get_nowait())
    type_password(form, PASSWORD)
    form.login_button.click()
    assert form.step()
    assert form.state.done and not form.state.cancelled
    assert session.token is not None and session.token.user == "demo"
    assert "Logged in as demo" in form.final_line and "token expires" in form.final_line
    assert form.login_button.disabled


def test_callbacks_decide_nothing_until_the_loop_steps(session):
    form = LoginForm(session, "Log in")
    type_password(form, PASSWORD)
    form.login_button.click()
    assert session.token is None and not form.state.finished  # only recorded
    assert form.step() and session.token is not None


def test_wrong_password_keeps_the_form_open_with_the_server_message(session):
    form = LoginForm(session, "Log in")
    type_password(form, "wrong")
    form.login_button.click()
    assert not form.step()
    assert "400" in form.message.value and "invalid_grant" in form.message.value
    assert "wrong" not in form.message.value
    type_password(form, PASSWORD)
    form.login_button.click()
    assert form.step() and form.state.done


def test_empty_password_is_refused_without_a_request(session):
    form = LoginForm(session, "Log in")
    form.login_button.click()
    assert not form.step()
    assert "Enter the password" in form.message.value and session.token is None


@pytest.mark.parametrize("field", ["secret", "user"])
def test_enter_in_a_field_logs_in(session, field):
    """Enter sends "submit" before the field's value: the login waits for the value."""
    form = LoginForm(session, "Log in")
    press_enter(getattr(form, field))
    type_password(form, PASSWORD)
    assert form.step() and form.state.done
    assert "Enter the password" not in form.message.value  # no false alarm on the way


def test_cancel(session):
    form = LoginForm(session, "Log in")
    type_password(form, "typed")
    form.cancel_button.click()
    form.login_button.click()  # a late click does nothing
    assert form.step()
    assert form.state.cancelled and not form.state.done
    assert form._secret == "" and form.secret.value == "" and form._events.empty()
    assert session.token is None
    with pytest.raises(LoginCancelled, match=r"^demo at http://\S+ is not logged in \(run the cell again"):
        outcome(form, 5)
    assert form.final_line == ""  # the error says it: the form leaves no line of its own


def test_timeout_ends_with_one_line(session):
    form = LoginForm(session, "Log in")
    type_password(form, "typed-but-never-sent")
    assert waiting.wait_for(form.is_finished, 0, need_frontend=False) is False
    form.close()
    assert form._secret == "" and form._events.empty()
    with pytest.raises(SessionExpired, match="No login within 0 s"):
        outcome(form, 0)
    assert form.state.timed_out and form.final_line == ""  # the error says it


def test_late_password_without_a_recent_click_does_not_log_in(session, monkeypatch):
    import session_magics.ui as ui

    monkeypatch.setattr(ui, "PENDING_CLICK_SECONDS", -1.0)
    form = LoginForm(session, "Log in")
    form.login_button.click()
    type_password(form, PASSWORD)
    assert not form.step()  # typing alone never logs in
    assert session.token is None


# -- the click and the value on different threads, in both orders ---------------------


def test_click_on_main_thread_then_value_on_another_while_the_form_reacts(session):
    """The race seen on ipykernel 7 with comms over subshells: the click is handled on
    the main thread and the form says "Enter the password."; the value arrives on a
    subshell thread while the form is still reacting to the click."""
    form = LoginForm(session, "Log in")
    delivered = threading.Event()

    def on_message(change):
        if "Enter the password" in change["new"] and not delivered.is_set():
            delivered.set()
            on_thread(lambda: type_password(form, PASSWORD))

    form.message.observe(on_message, names="value")
    clicked = []

    def loop_step() -> bool:
        if not clicked:  # the pump dispatches the click on the waiting (main) thread
            clicked.append(True)
            form.login_button.click()
        return form.is_finished()

    assert waiting.wait_for(loop_step, LOST, need_frontend=False), form.message.value
    assert delivered.is_set()  # the value did come second
    assert form.state.done and session.token is not None


def test_click_on_one_thread_then_value_on_another(session):
    form = LoginForm(session, "Log in")
    on_thread(form.login_button.click)
    on_thread(lambda: type_password(form, PASSWORD))
    assert waiting.wait_for(form.is_finished, LOST, need_frontend=False)
    assert form.state.done and session.token is not None


def test_value_on_one_thread_then_click_on_another_while_the_loop_runs(session):
    form = LoginForm(session, "Log in")
    results: list[bool] = []
    stepping = threading.Event()

    def loop_step() -> bool:
        stepping.set()
        return form.is_finished()

    waiter = threading.Thread(
        target=lambda: results.append(waiting.wait_for(loop_step, LOST, need_frontend=False))
    )
    waiter.start()
    stepping.wait()
    on_thread(lambda: type_password(form, PASSWORD))
    on_thread(form.login_button.click)
    waiter.join()
    assert results == [True]
    assert form.state.done and session.token is not None


def test_many_clicks_and_values_from_many_threads_log_in_once(session):
    form = LoginForm(session, "Log in")
    logins = []
    real_login = session.login

    def counting_login(user, secret):
        logins.append(user)
        return real_login(user, secret)

    session.login = counting_login  # counts calls on the real session; nothing replaced
    barrier = threading.Barrier(8)

    def deliver(i: int) -> None:
        barrier.wait()
        if i % 2:
            form.login_button.click()
        else:
            type_password(form, PASSWORD)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert waiting.wait_for(form.is_finished, LOST, need_frontend=False)
    assert len(logins) == 1 and form.state.done


@pytest.mark.parametrize(
    ("token_mode", "typed"),
    [(False, "wrong-password"), (True, "a pasted token with spaces")],
    ids=["password", "pasted-token"],
)
def test_terminal_login_clears_what_was_typed_when_the_login_fails(session, monkeypatch, token_mode, typed):
    """The traceback of a failed terminal login (IPython keeps the last one for %debug)
    holds terminal_login's frame: the typed password or token is no longer in it."""
    import getpass

    from session_magics.errors import LoginError
    from session_magics.ui import terminal_login

    session.profile.token_mode = token_mode
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": typed)
    with pytest.raises(LoginError) as info:
        terminal_login(session, "Log in")
    frames = []
    tb = info.tb
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    [frame] = [f for f in frames if f.f_code is terminal_login.__code__]
    assert "secret" in frame.f_locals
    assert typed not in repr(frame.f_locals)
    assert typed not in str(info.value)
