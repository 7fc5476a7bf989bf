"""Secrets never surface: not in -v output, reprs, %login --status, error messages,
tracebacks (IPython's Verbose mode shows local variables!) or DEBUG log records."""

from __future__ import annotations

import logging

import keyring
import pytest
from keyring.errors import PasswordSetError

from session_magics import Interrupted, LoginError, RequestFailed, RequestSyntaxError
from tests.keyrings import HangingWriteKeyring, MemoryKeyring
from tests.security.helpers import (
    DEMO_PASSWORD,
    PASSWORD_ENV,
    TOKEN_ENV,
    assert_absent,
    assert_short_error,
    interrupt_when,
    issued_secrets,
    login,
    session_of,
    shown,
)


class EchoingFailKeyring(MemoryKeyring):
    """A keyring whose writes fail with a message quoting the value (some backends do)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        self.writes += 1
        raise PasswordSetError(f"the item could not be created: secret={password!r} (0x8009000d)")


@pytest.fixture
def verbose_shell(new_shell):
    shell = new_shell()
    assert shell.run("%xmode Verbose").error is None
    return shell


# --------------------------------------------------------- the harness itself
def test_verbose_mode_does_show_local_variables(verbose_shell):
    """The control: a plain exception in Verbose mode prints locals, so the tests below,
    which assert that our errors do not, would see a leak if there were one."""
    run = verbose_shell.run(
        "def f():\n    hidden = 'LOCAL-canary-value-123'\n    raise ValueError('boom')\nf()"
    )
    assert isinstance(run.error, ValueError)
    assert "LOCAL-canary-value-123" in shown(run)


# ------------------------------------------------------ errors in Verbose mode
def test_interrupted_request_shows_one_line_without_the_token(api, kr, verbose_shell):
    login(verbose_shell, api)
    token = session_of(verbose_shell, api.url).token.access_token
    with interrupt_when(lambda: api.stats()["requests_by_path"].get("/slow", 0) > 0):
        run = verbose_shell.run("%%api\nGET /slow?seconds=3")
    assert_short_error(run, Interrupted, "GET", "interrupted")
    assert isinstance(run.error, KeyboardInterrupt)
    assert_absent(shown(run), token, DEMO_PASSWORD)
    assert verbose_shell.run("%%api\nGET /me").result.status_code == 200


def test_unexpected_error_inside_a_request_is_one_line_without_the_token(api, kr, verbose_shell):
    """Called directly (no cell parser to catch it first), a header http.client cannot
    encode fails deep in the stack, whose frames hold the Authorization header."""
    login(verbose_shell, api)
    token = session_of(verbose_shell, api.url).token.access_token
    run = verbose_shell.run(
        "from session_magics import magics\n"
        "s = magics._instance.session()\n"
        "s.request('GET', '/me', headers={'X-Note': '€uro'})"
    )
    assert_short_error(run, RequestFailed, "UnicodeEncodeError")
    assert_absent(shown(run), token)


def test_non_latin1_header_in_a_cell_is_a_syntax_error(api, kr, verbose_shell):
    login(verbose_shell, api)
    token = session_of(verbose_shell, api.url).token.access_token
    run = verbose_shell.run("%%api\nGET /me\nX-Note: €uro\n")
    assert_short_error(run, RequestSyntaxError, "line 2", "Latin-1")
    assert_absent(shown(run), token)


@pytest.mark.parametrize(
    "path, words",
    [
        ("/deep-json", ["not valid JSON"]),
        ("/echo-error", ["400", "●●●●"]),
        ("/crlf-token", ["line breaks"]),
        ("/html", ["text/html", "--login"]),
        ("/no-token", ["holds no token", "status"]),
    ],
)
def test_odd_login_answers_are_one_line_without_the_password(odd, kr, verbose_shell, path, words):
    run = verbose_shell.run(f"%login {odd.url} --user demo --password-env {PASSWORD_ENV} --login {path}")
    assert_short_error(run, LoginError, *words)
    assert_absent(shown(run), DEMO_PASSWORD, "abcd1234")


def test_keyring_error_quoting_the_value_is_redacted(api, verbose_shell):
    keyring.set_keyring(EchoingFailKeyring())
    run = verbose_shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert "could not be saved" in run.stderr and "●●●●" in run.stderr
    assert_absent(shown(run), DEMO_PASSWORD, *issued_secrets(api.state))
    run = verbose_shell.run("%%api\nGET /me")  # the token is kept in memory
    assert run.result.status_code == 200


def test_interrupting_a_hanging_keyring_write_shows_no_token_and_keeps_the_login(api, verbose_shell):
    ring = HangingWriteKeyring()
    keyring.set_keyring(ring)
    verbose_shell.run("%config SessionMagics.keyring_timeout = 10")
    try:
        with interrupt_when(ring.entered.is_set):
            run = verbose_shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
        assert ring.entered.is_set()
        assert_short_error(run, Interrupted, "keyring")
        assert_absent(shown(run), DEMO_PASSWORD, *issued_secrets(api.state))
    finally:
        ring.release.set()
    api.reset_stats()
    run = verbose_shell.run(f"%login {api.url}")  # the login was not lost: no password needed
    assert "Already logged in as demo" in run.stdout, shown(run)
    assert verbose_shell.run("%%api\nGET /me").result.status_code == 200
    assert api.stats()["password_grants"] == 0


# ------------------------------------------------------------- what is shown
def test_verbose_flag_redacts_a_custom_token_header(kr, new_shell, recorder, monkeypatch):
    secret = "pasted-Token-14142135623"
    monkeypatch.setenv(TOKEN_ENV, secret)
    shell = new_shell()
    run = shell.run(f"%login {recorder.url} --token-env {TOKEN_ENV} --header X-Session-Key --scheme none")
    assert run.error is None, shown(run)
    run = shell.run("%%api -v -o r\nGET /x")
    assert run.error is None, shown(run)
    assert recorder.requests()[0]["headers"]["x-session-key"] == secret  # it was sent
    assert "X-Session-Key: ●●●●●●" in run.stdout
    assert_absent(run.all_text, secret)
    result = shell.ip.user_ns["r"]
    assert_absent(repr(result) + result.headers_text() + str(result.response.request.headers), secret)


def test_reprs_status_and_results_show_no_secret(api, kr, new_shell):
    shell = new_shell()
    login(shell, api, "--revoke /auth/revoke")
    run = shell.run("%%api -v -o me\nGET /redirect?to=/me&status=302")
    assert run.result.status_code == 200
    status = shell.run("%login --status")
    session = session_of(shell, api.url)
    result = shell.ip.user_ns["me"]
    texts = [
        shown(run),
        shown(status),
        repr(session),
        repr(session.token),
        str(session.token),
        repr(session.profile),
        repr(shell.magics.sessions),
        repr(result),
        result.headers_text(),
        str(result.response.request.headers),
        str([h.request.headers for h in result.response.history]),
        str(result._repr_mimebundle_()),
    ]
    assert "demo" in shown(status) and api.url in shown(status)
    assert_absent("\n".join(texts), DEMO_PASSWORD, *issued_secrets(api.state))


def test_debug_logs_hold_no_secret(api, kr, new_shell, caplog):
    """Every logger at DEBUG (urllib3, requests, keyring, ours) through login, requests,
    a refresh, a failed request and a logout with revocation."""
    caplog.set_level(logging.DEBUG)
    shell = new_shell()
    login(shell, api, "--revoke /auth/revoke")
    shell.run("%%api -v\nGET /me")
    shell.run("%%api\nGET /status/503")
    api.advance_clock(301)
    assert shell.run("%%api\nGET /me").result.status_code == 200
    assert api.stats()["refresh_grants"] == 1
    shell.run("%%api\nGET http://127.0.0.1:9/refused")
    assert shell.run("%logout").error is None
    assert len(caplog.records) > 10  # urllib3 did log at DEBUG
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert "127.0.0.1" in logged
    assert_absent(logged, DEMO_PASSWORD, *issued_secrets(api.state))
