"""Terminal IPython in a real pseudo-terminal: getpass prompts instead of the form."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pexpect
import pytest

from session_magics.demo import DemoServer
from tests.servers import other_origin, project_logging_in_at

pytestmark = pytest.mark.slow

IPYTHON = str(Path(sys.executable).with_name("ipython"))


@pytest.fixture
def api(forget_stored_tokens):
    password = "pw-" + secrets.token_hex(6)
    with DemoServer(password=password) as server:
        forget_stored_tokens(server.url)
        yield server


def spawn(tmp_path, cwd=None, **extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_MAGICS_FRONTEND")}
    env.update(IPYTHONDIR=str(tmp_path / "ipython"), TERM="dumb", PYTHONUNBUFFERED="1", **extra_env)
    child = pexpect.spawn(
        IPYTHON,
        ["--no-banner", "--colors=NoColor", "--simple-prompt", "--no-confirm-exit"],
        cwd=cwd,
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    child.expect(r"In \[1\]: ")
    return child


def test_getpass_login_then_renewal_in_place(api, tmp_path):
    child = spawn(tmp_path)
    transcript = []
    try:
        child.sendline("%load_ext session_magics")
        child.expect(r"In \[2\]: ")
        child.sendline(f"%login {api.url} --user demo --no-keyring")
        child.expect(f"Password for demo at {api.url}: ")
        child.sendline(api.config.password)
        child.expect("Logged in as demo")
        transcript.append(child.before)
        child.expect(r"In \[3\]: ")

        api.advance_clock(10_000)  # access and refresh tokens expired on the server
        api.reset_stats()
        child.sendline("r = %api GET /me")
        child.expect("Session expired for demo")
        child.expect(f"Password for demo at {api.url}: ")
        child.sendline(api.config.password)
        child.expect(r"In \[4\]: ")
        transcript.append(child.before)
        child.sendline("print('STATUS', r.status_code, r.data['username'])")
        child.expect(r"STATUS (\d+) (\w+)")
        assert child.match.group(1) == "200" and child.match.group(2) == "demo"
        child.expect(r"In \[5\]: ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        transcript.append(child.before)
    finally:
        child.close(force=True)
    stats = api.stats()
    assert stats["refresh_failures"] == 1  # renewal was tried silently first
    assert stats["password_grants"] == 1  # then the prompt logged in again
    assert api.config.password not in "".join(transcript)  # getpass does not echo


def test_getpass_cancel_gives_session_expired(api, tmp_path):
    child = spawn(tmp_path)
    try:
        child.sendline("%load_ext session_magics")
        child.expect(r"In \[2\]: ")
        child.sendline(f"%login {api.url} --user demo --no-keyring")
        child.expect("Password for demo at")
        child.sendcontrol("d")  # EOF at the prompt
        child.expect("SessionExpired")
        child.expect("Login cancelled")
        child.expect(r"In \[3\]: ")
    finally:
        child.close(force=True)


def test_ctrl_c_at_the_password_prompt_ends_its_line(api, tmp_path):
    """Ctrl+C at getpass cancels the login; the message starts on a line of its own
    (getpass ends the prompt's line only when it gets an answer)."""
    child = spawn(tmp_path)
    try:
        child.sendline("%load_ext session_magics")
        child.expect(r"In \[2\]: ")
        child.sendline(f"%login {api.url} --user demo --no-keyring")
        child.expect(f"Password for demo at {api.url}: ")
        child.sendintr()  # the terminal's Ctrl+C
        child.expect(r"In \[3\]: ")
        after_prompt = child.before
        assert "Login cancelled" in after_prompt, after_prompt
        assert after_prompt.lstrip(" ").startswith(("\r\n", "\n")), repr(after_prompt)
        assert api.stats()["password_grants"] == 0
    finally:
        child.close(force=True)


def test_a_projects_credential_origin_is_asked_about_once(api, tmp_path):
    """A pyproject.toml puts the token endpoint on another origin (localhost:PORT for the
    API at 127.0.0.1:PORT): terminal IPython asks y/N before the password, and the yes is
    kept in the user's config file."""
    import tomllib

    other = other_origin(api.url)
    project = project_logging_in_at(tmp_path / "repo", other)
    xdg = tmp_path / "xdg"
    child = spawn(tmp_path, cwd=str(project), XDG_CONFIG_HOME=str(xdg))
    try:
        child.sendline("%load_ext session_magics")
        child.expect(r"In \[2\]: ")
        child.sendline(f"%login {api.url} --user demo --no-keyring")
        child.expect(f"Credentials go to {other} — set by ./pyproject.toml")
        child.expect(r"\[y/N\] ")
        assert api.stats()["password_grants"] == 0
        child.sendline("y")
        child.expect(f"Password for demo at {api.url}: ")
        child.sendline(api.config.password)
        child.expect(f"Logged in as demo at {api.url}")
        child.expect(f"credentials go to {other}")
        child.expect(r"In \[3\]: ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert api.stats()["password_grants"] == 1
    saved = tomllib.loads((xdg / "session-magics" / "config.toml").read_text())
    assert saved["approved_credential_origins"] == {str(project.resolve()): [other]}
