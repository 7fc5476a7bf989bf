"""The magics driven through IPython against the demo API on 127.0.0.1."""

from __future__ import annotations

import sqlite3

import keyring
import pytest
from keyring.backends import fail, null

from session_magics import KeyringError, NoFrontendError, SessionExpired
from session_magics.errors import RequestSyntaxError
from tests.ipython_helpers import shell_factory

PASSWORD_ENV = "SM_TEST_PASSWORD"


@pytest.fixture
def new_shell(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "penguins")
    with shell_factory(tmp_path) as make:
        yield make


def login(shell, api, extra=""):
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} {extra}")
    assert run.error is None, run.all_text
    return run


def test_help_text_on_every_magic(new_shell):
    shell = new_shell()
    for name in ("login", "logout", "api"):
        doc = shell.ip.find_magic(name).__doc__
        assert "--profile" in doc, name
    assert "--password-env" in shell.ip.find_magic("login").__doc__
    assert "{{expr}}" in shell.ip.find_magic("api").__doc__


def test_help_examples_are_one_command_a_line(new_shell):
    """`%login?` shows each example as a person would type it: a line continued with a
    backslash in the source would show as one line with a gap of spaces in it."""
    import re

    shell = new_shell()
    examples = [
        line.strip()
        for name in ("login", "logout", "api")
        for line in shell.ip.find_magic(name).__doc__.splitlines()
        if re.match(r"\s*(\w+ = )?%", line)
    ]
    assert any(e.startswith("%login") and "--oauth client" in e for e in examples), examples
    for example in examples:
        assert not re.search(r"\S {2,}\S", example) and not example.endswith("\\"), example


def test_login_stores_token_in_keyring_and_nothing_secret_surfaces(api, kr, new_shell):
    shell = new_shell()
    run = login(shell, api)
    assert "Logged in as demo" in run.stdout
    service = f"session-magics {api.url}"
    entry = kr.get_password(service, "demo")
    assert entry and '"a":' in entry  # the token lives in the keyring entry
    assert kr.get_password(service, "@last-user") == "demo"
    r = shell.run("%%api -o me\nGET /me\n")
    assert r.error is None, r.all_text
    assert shell.ip.user_ns["me"].data["username"] == "demo"
    import json

    token = json.loads(entry)
    history = shell.ip.history_manager.hist_file
    shell.ip.history_manager.writeout_cache()
    dump = "\n".join(str(row) for row in sqlite3.connect(history).execute("select * from history").fetchall())
    assert "%login" in dump
    for secret in (token["a"], token["r"], "penguins"):
        assert secret not in dump
        assert secret not in run.all_text and secret not in r.all_text
        assert secret not in repr(shell.magics.sessions)


def test_new_shell_reuses_stored_token_without_prompt(api, kr, new_shell, monkeypatch):
    login(new_shell(), api)
    api.reset_stats()
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    shell2 = new_shell()  # a kernel restart: nothing in memory
    run = shell2.run(f"%login {api.url}")
    assert run.error is None, run.all_text
    assert "Already logged in as demo" in run.stdout
    r = shell2.run("%%api\nGET /me")
    assert r.error is None and r.result.status_code == 200
    assert api.stats()["password_grants"] == 0


def test_expiry_refreshes_and_retries_once(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    api.reset_stats()
    api.advance_clock(301)  # the server now considers the access token expired
    r = shell.run("%%api -o me\nGET /me")
    assert r.error is None, r.all_text
    assert shell.ip.user_ns["me"].status_code == 200
    stats = api.stats()
    assert stats["refresh_grants"] == 1
    assert stats["unauthorized"] == 1


def test_refresh_failure_raises_session_expired_and_clears_entry(api, kr, new_shell, monkeypatch):
    shell = new_shell()
    login(shell, api)
    service = f"session-magics {api.url}"
    assert kr.get_password(service, "demo")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    shell.magics.sessions[api.url].profile.password_env = None
    api.advance_clock(4000)  # both tokens expired
    r = shell.run("%%api\nGET /me")
    assert isinstance(r.error, SessionExpired), r.all_text
    assert "%login" in str(r.error)
    assert kr.get_password(service, "demo") is None
    assert "Traceback" not in r.stdout + r.stderr


def test_relogin_from_env_var_when_refresh_fails(api, kr, new_shell):
    """In a scheduled run the env var logs in again and the same request completes."""
    shell = new_shell()
    login(shell, api)
    api.advance_clock(4000)
    api.reset_stats()
    r = shell.run("%%api -o me\nGET /me")
    assert r.error is None, r.all_text
    assert shell.ip.user_ns["me"].status_code == 200
    assert api.stats()["password_grants"] == 1


def test_token_never_sent_to_another_origin(api, kr, new_shell):
    from tests.servers import RecorderServer

    shell = new_shell()
    login(shell, api)
    with RecorderServer() as other:
        r = shell.run(f"%%api\nGET {other.url}/absolute")
        assert r.error is None, r.all_text
        r = shell.run(f"%%api\nGET /redirect?to={other.url}/redirected&status=307")
        assert r.error is None, r.all_text
        seen = other.requests()
    assert [req["path"] for req in seen] == ["/absolute", "/redirected"]
    for req in seen:
        assert "authorization" not in {k.lower() for k in req["headers"]}


def test_cell_authorization_header_wins(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("%%api\nGET /me\nAuthorization: Bearer not-a-valid-token\n")
    assert r.error is None
    assert r.result.status_code == 401  # ours was not added, and no refresh loop


def test_error_status_is_shown_not_raised(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("%%api\nGET /status/404")
    assert r.error is None
    assert r.result.status_code == 404
    assert any("404" in str(d.get("text/html", "")) for d in r.displayed)


def test_parse_error_names_the_line(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("%%api\nGET /me\nAccept application/json\n")
    assert r.error is not None
    assert "line 2" in str(r.error) and "expected a header" in str(r.error)


def test_dollar_and_braces_are_not_expanded_by_ipython(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    shell.run("word = 'hello'")
    r = shell.run('%%api\nPOST /echo\n\n{"literal": "$word {word}", "value": "{{word}}"}')
    assert r.error is None, r.all_text
    assert r.result.data["json"] == {"literal": "$word {word}", "value": "hello"}


def test_penguins_dataframe_and_verbose_headers_redacted(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("%%api -v -o p\nGET /penguins?per_page=50\nAccept: application/json\n")
    assert r.error is None, r.all_text
    df = shell.ip.user_ns["p"].df
    assert len(df) == 50 and "species" in df.columns
    assert "Authorization: Bearer ●●●●●●" in r.stdout
    token = shell.magics.sessions[api.url].token.access_token
    assert token not in r.stdout


def test_logout_revokes_and_deletes(api, kr, new_shell):
    shell = new_shell()
    login(shell, api, "--revoke /auth/revoke")
    token = shell.magics.sessions[api.url].token
    r = shell.run("%logout")
    assert r.error is None, r.all_text
    assert kr.get_password(f"session-magics {api.url}", "demo") is None
    assert api.stats()["revocations"] >= 1
    import requests

    headers = {"Authorization": f"Bearer {token.access_token}"}
    assert requests.get(f"{api.url}/me", headers=headers).status_code == 401


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["no-backend", "null"])
def test_keyring_unavailable_is_a_clear_error(api, new_shell, backend):
    keyring.set_keyring(backend)
    shell = new_shell()
    r = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert isinstance(r.error, KeyringError)
    assert "--no-keyring" in str(r.error)


def test_no_keyring_keeps_token_in_memory(api, new_shell):
    keyring.set_keyring(fail.Keyring())
    shell = new_shell()
    run = login(shell, api, "--no-keyring")
    assert "memory only" in run.stderr
    assert shell.run("%%api\nGET /me").result.status_code == 200


def test_status_lists_profiles_without_tokens(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("%login --status")
    token = shell.magics.sessions[api.url].token
    assert "demo" in r.stdout and api.url in r.stdout
    assert token.access_token not in r.stdout and token.refresh_token not in r.stdout


def test_no_frontend_fails_fast(api, kr, new_shell, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    shell = new_shell()
    r = shell.run(f"%login {api.url} --user demo")
    # NoFrontendError is raised before any wait; a form or prompt that waited would end
    # in SessionExpired "No login within 300 s" (SessionMagics.login_timeout) instead.
    assert isinstance(r.error, NoFrontendError), r.all_text
    assert "--password-env" in str(r.error) and "No login within" not in r.all_text
    assert api.stats()["password_grants"] == 0


def test_line_form_assignment(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("me = %api GET /me\nme.data['username']")
    assert r.error is None, r.all_text
    assert r.result == "demo"


def test_kernel_restart_with_real_secret_service(api, secret_service_keyring, new_shell, monkeypatch):
    """Log in in one process; a new process (a restarted kernel) finds the token in the
    Secret Service by itself and needs no password."""
    import subprocess
    import sys

    keyring.set_keyring(secret_service_keyring)
    login(new_shell(), api)
    api.reset_stats()
    script = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_cell('%load_ext session_magics')\n"
        f"r = ip.run_cell('%login {api.url}')\n"
        "r.raise_error()\n"
        "r = ip.run_cell('x = %api GET /me')\n"
        "r.raise_error()\n"
        "print('USER', ip.user_ns['x'].data['username'])\n"
        "from session_magics import magics\n"
        "print('BACKEND', type(magics._instance._keyring_store.backend).__module__)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != PASSWORD_ENV}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "Already logged in as demo" in out.stdout
    assert "USER demo" in out.stdout
    assert "BACKEND keyring.backends.SecretService" in out.stdout
    assert api.stats()["password_grants"] == 0
    shell = new_shell()
    shell.run(f"%login {api.url}")
    assert shell.run("%logout").error is None
    assert secret_service_keyring.get_password(f"session-magics {api.url}", "demo") is None


def test_config_changes_apply_to_existing_profiles(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    assert shell.run("%config SessionMagics.timeout = 0.5").error is None
    r = shell.run("%%api\nGET /slow?seconds=3")
    assert r.error is not None and "no complete answer within 0.5 s" in str(r.error)
    shell.run("%config SessionMagics.leeway = 5")
    assert shell.magics.sessions[api.url].leeway == 5


# -- %logout and %login --status from any kernel --------------------------------------


@pytest.mark.parametrize("form", ["{url}", "--profile {url}", "{url}/v1/"])
def test_logout_by_url_in_a_fresh_kernel_finds_the_stored_login(api, kr, new_shell, form):
    login(new_shell(), api)
    service = f"session-magics {api.url}"
    assert kr.get_password(service, "demo") is not None
    fresh = new_shell()  # another kernel: no profile of its own for that API
    r = fresh.run("%logout " + form.format(url=api.url))
    assert r.error is None, r.all_text
    assert f"Logged out of {api.url}; the stored token was deleted." in r.stdout
    assert kr.get_password(service, "demo") is None
    assert fresh.magics.sessions == {}  # looked up, not kept as a profile of this kernel


def test_logout_says_deleted_only_when_something_was_stored(api, kr, new_shell):
    shell = new_shell()
    r = shell.run(f"%logout {api.url}")
    assert r.error is None, r.all_text
    assert "the stored token was deleted" not in r.stdout
    assert f"Not logged in at {api.url}: no stored token, nothing was deleted." in r.stdout
    login(shell, api)
    first = shell.run("%logout")
    assert "the stored token was deleted" in first.stdout
    again = shell.run("%logout")
    assert again.error is None, again.all_text
    assert "the stored token was deleted" not in again.stdout and "no stored token" in again.stdout


def test_logout_of_a_memory_only_login_says_what_was_dropped(api, new_shell):
    keyring.set_keyring(fail.Keyring())
    shell = new_shell()
    login(shell, api, "--no-keyring")
    r = shell.run("%logout")
    assert r.error is None, r.all_text
    assert "the token (kept in memory only) was dropped" in r.stdout
    assert "stored token was deleted" not in r.stdout


def test_a_kernel_that_logged_out_uses_a_login_made_later_by_another(api, kr, new_shell, monkeypatch):
    first, second = new_shell(), new_shell()
    login(first, api)
    assert "the stored token was deleted" in first.run("%logout").stdout
    login(second, api)  # another kernel logs in again afterwards
    monkeypatch.delenv(PASSWORD_ENV, raising=False)  # the first kernel could not log in by itself now
    r = first.run("%%api\nGET /me")
    assert r.error is None, r.all_text
    assert r.result.status_code == 200 and r.result.data["username"] == "demo"
    assert "Already logged in as demo" in first.run(f"%login {api.url}").stdout
    assert api.stats()["password_grants"] == 2  # the two %login, no third


def test_status_without_a_keyring_lists_what_it_can_and_says_why(api, new_shell):
    keyring.set_keyring(fail.Keyring())
    shell = new_shell()
    login(shell, api, "--no-keyring --profile mem")
    failed = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert isinstance(failed.error, KeyringError)  # this profile stays, without a token
    r = shell.run("%login --status")
    assert r.error is None, r.all_text
    lines = r.stdout.splitlines()
    assert any(line.startswith("* mem: ") and "demo, token expires" in line for line in lines), r.stdout
    assert any(api.url in line and "token unknown" in line for line in lines), r.stdout
    assert sum("no OS keyring is available" in line for line in lines) == 1, r.stdout


def test_status_shows_each_url_once(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    r = shell.run("%login --status")
    (row,) = r.stdout.splitlines()
    assert row.count("127.0.0.1") == 1, row
    assert row.startswith(f"* {api.url}/ — demo, token expires"), row


def test_a_broken_json_body_is_refused_before_anything_is_sent(recorder, new_shell):
    shell = new_shell()
    r = shell.run(f'%%api\nPOST {recorder.url}/items\n\n{{"name": "Adélie",}}')
    assert isinstance(r.error, RequestSyntaxError), r.all_text
    assert "line 3: the body looks like JSON but is not valid JSON" in str(r.error)
    ok = shell.run(f'%%api\nPOST {recorder.url}/items\nContent-Type: text/plain\n\n{{"name": "Adélie",}}')
    assert ok.error is None, ok.all_text
    (sent,) = recorder.wait_for(1)  # only the second one: the first never left
    assert sent["headers"]["content-type"] == "text/plain"
    assert sent["body"] == '{"name": "Adélie",}'.encode()
