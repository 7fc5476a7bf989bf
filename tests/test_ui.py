"""The login form's behaviour in the kernel (the browser side is in tests/e2e)."""

from __future__ import annotations

import pytest

from session_magics.demo import DemoServer
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import MemoryStore
from session_magics.ui import FORM_CLASS, LoginForm


@pytest.fixture
def session():
    with DemoServer(password="right-password") as api:
        yield ApiSession(Profile(name="d", base_url=api.url, user="demo", use_keyring=False), MemoryStore())


def type_password(form, text):
    form.secret.value = text  # what the browser's value message does


def test_password_leaves_the_widget_at_once(session):
    form = LoginForm(session, "Log in")
    assert FORM_CLASS in form.widget._dom_classes
    type_password(form, "right-password")
    assert form.secret.value == ""  # nothing for saved widget state to keep
    assert form.secret.get_state()["value"] == ""
    form._on_login()
    assert form.state.done and not form.state.cancelled
    assert session.token is not None and session.token.user == "demo"
    assert "Logged in as demo" in form.message.value
    assert form.login_button.disabled


def test_wrong_password_keeps_the_form_open_with_the_server_message(session):
    form = LoginForm(session, "Log in")
    type_password(form, "wrong")
    form._on_login()
    assert not form.state.finished
    assert "400" in form.message.value and "invalid_grant" in form.message.value
    assert "wrong" not in form.message.value
    type_password(form, "right-password")
    form._on_login()
    assert form.state.done


def test_empty_password_is_refused_without_a_request(session):
    form = LoginForm(session, "Log in")
    form._on_login()
    assert not form.state.finished and "Enter the password" in form.message.value


def test_cancel(session):
    form = LoginForm(session, "Log in")
    type_password(form, "typed")
    form._on_cancel()
    assert form.state.cancelled and not form.state.done
    assert form._typed == "" and form.secret.value == ""
    form._on_login()  # a late click does nothing
    assert session.token is None


def test_click_that_overtakes_the_password_still_logs_in(session):
    """ipykernel 7 may handle the click before the value message sent just before it."""
    form = LoginForm(session, "Log in")
    form._on_login()  # the click arrives first: nothing typed yet
    assert not form.state.finished
    type_password(form, "right-password")  # then the value
    assert form.state.done and session.token is not None


def test_late_password_without_a_recent_click_does_not_log_in(session, monkeypatch):
    import session_magics.ui as ui

    monkeypatch.setattr(ui, "PENDING_CLICK_SECONDS", 0.0)
    form = LoginForm(session, "Log in")
    form._on_login()
    type_password(form, "right-password")
    assert not form.state.finished  # typing alone never logs in
