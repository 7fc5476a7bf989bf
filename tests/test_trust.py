"""The trust model's rule (session_magics/trust.py), its approvals file, and the login
form's confirmation. The security tests (tests/security/test_trust.py) attack it end to end."""

from __future__ import annotations

import tomllib

import pytest

from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import MemoryStore
from session_magics.trust import (
    ApprovalNeeded,
    Approvals,
    CredentialEndpointRefused,
    Endpoint,
    SetBy,
    Trust,
    approval_line,
)
from session_magics.ui import LoginForm

API = ("https", "api.example.com", 443)


@pytest.fixture
def approvals(tmp_path):
    return Approvals(tmp_path / "xdg" / "session-magics" / "config.toml")


@pytest.fixture
def repo(tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[tool.session_magics]\n")
    return folder


def trust(approvals, allow_http=False):
    return Trust(API, allow_http, approvals)


@pytest.mark.parametrize(
    ("url", "kind", "allowed"),
    [
        ("https://api.example.com/auth/token", "project", True),  # the API's own origin: anyone
        ("https://API.example.com:443/token", "project", True),
        ("https://login.example.com/token", "line", True),  # the user named it
        ("https://login.example.com/token", "user", True),
        ("https://login.example.com/token", "project", False),  # a project file: approval first
        ("https://api.example.com:8443/token", "project", False),  # another port: another origin
        ("http://api.example.com/token", "project", False),  # another scheme too (and plain http)
    ],
)
def test_who_may_send_credentials_where(approvals, repo, url, kind, allowed):
    set_by = SetBy(kind, str(repo / "pyproject.toml") if kind == "project" else None)
    endpoint = Endpoint("login", url, set_by)
    if allowed:
        assert trust(approvals).require(endpoint) == url
    else:
        with pytest.raises((ApprovalNeeded, CredentialEndpointRefused)):
            trust(approvals).require(endpoint)


@pytest.mark.parametrize("kind", ["line", "user", "project"])
@pytest.mark.parametrize(
    "url",
    ["http://login.example.com/token", "http://10.0.0.1/token", "https://a:1\\@b:2/", "https://u:p@x/"],
)
def test_refused_whoever_set_them(approvals, repo, kind, url):
    endpoint = Endpoint("refresh", url, SetBy(kind, str(repo / "pyproject.toml")))
    with pytest.raises(CredentialEndpointRefused):
        trust(approvals).require(endpoint)


def test_plain_http_to_loopback_or_with_allow_http(approvals):
    assert trust(approvals).require(Endpoint("login", "http://127.0.0.1:9/t"))
    assert trust(approvals).require(Endpoint("login", "http://localhost:9/t"))
    assert trust(approvals, allow_http=True).require(Endpoint("login", "http://login.example.com/t"))


def test_an_approval_is_per_project_folder_and_origin(approvals, repo, tmp_path):
    set_by = SetBy("project", str(repo / "pyproject.toml"))
    endpoint = Endpoint("login", "https://login.example.com/token", set_by)
    with pytest.raises(ApprovalNeeded) as info:
        trust(approvals).require(endpoint)
    needed = info.value
    assert needed.origin == "https://login.example.com" and needed.project_dir == str(repo.resolve())
    assert approval_line(needed.project_dir, needed.origin) in str(needed)
    trust(approvals).approve(needed)
    assert trust(approvals).require(endpoint)
    other_port = Endpoint("login", "https://login.example.com:8443/t", endpoint.set_by)
    with pytest.raises(ApprovalNeeded):
        trust(approvals).require(other_port)
    other = tmp_path / "other"
    other.mkdir()
    elsewhere = Endpoint("login", endpoint.url, SetBy("project", str(other / "pyproject.toml")))
    with pytest.raises(ApprovalNeeded):
        trust(approvals).require(elsewhere)


def test_approving_keeps_the_users_file_and_the_line_of_the_message_works(approvals, repo):
    path = approvals.path
    path.parent.mkdir(parents=True)
    original = '# my settings\ntimeout = 20  # seconds\n\n[profiles.prod]\nbase_url = "https://x"\n'
    path.write_text(original)
    path.chmod(0o600)
    approvals.approve(str(repo), "https://login.example.com")
    approvals.approve(str(repo), "https://login.example.com")  # twice: once in the file
    approvals.approve(str(repo), "https://id.example.org")
    text = path.read_text()
    assert text.startswith(original)
    data = tomllib.loads(text)
    assert data["approved_credential_origins"] == {
        str(repo): ["https://login.example.com", "https://id.example.org"]
    }
    assert data["timeout"] == 20 and data["profiles"]["prod"]["base_url"] == "https://x"
    assert path.stat().st_mode & 0o777 == 0o600
    # The line an error message suggests, pasted by hand, is an approval too.
    by_hand = Approvals(path.with_name("other.toml"))
    line = approval_line(str(repo / "sub"), "https://sso.example.net")
    by_hand.path.write_text(f"[approved_credential_origins]\n{line}\n")
    assert by_hand.is_approved(str(repo / "sub"), "https://sso.example.net")


def test_a_new_approvals_file_is_private(approvals, repo):
    approvals.approve(str(repo), "https://login.example.com")
    assert approvals.path.stat().st_mode & 0o777 == 0o600
    assert approvals.path.parent.stat().st_mode & 0o777 == 0o700


# ------------------------------------------------------------------ the form
@pytest.fixture
def project_session(tmp_path, repo, api):
    """A profile whose login endpoint a project file put on another origin of the demo API
    (localhost:PORT for 127.0.0.1:PORT: same server, another origin)."""
    port = api.url.rsplit(":", 1)[1]
    profile = Profile(
        name="p",
        base_url=api.url,
        user="demo",
        login=f"http://localhost:{port}/auth/token",
        use_keyring=False,
        set_by={"login": SetBy("project", str(repo / "pyproject.toml"))},
    )
    approvals = Approvals(tmp_path / "xdg" / "config.toml")
    return ApiSession(profile, MemoryStore(), approvals=approvals), f"http://localhost:{port}"


def test_the_form_asks_before_credentials_go_to_a_projects_origin(project_session, api, repo):
    session, other = project_session
    form = LoginForm(session, "Log in")
    assert form.approve is not None and not form.approve.value
    assert f"Credentials go to {other} — set by {repo / 'pyproject.toml'}" in form.where.value.replace(
        "&quot;", '"'
    )
    form.secret.value = "penguins"
    form.login_button.click()
    form.step()
    assert not form.state.finished and "Tick the box" in form.message.value
    assert api.stats()["password_grants"] == 0 and api.stats()["login_failures"] == 0
    form.approve.value = True
    form.login_button.click()  # the password typed before is still there
    form.step()
    assert form.state.done, form.message.value
    assert api.stats()["password_grants"] == 1
    assert session.approvals.is_approved(str(repo.resolve()), other)
    again = LoginForm(session, "Log in")
    assert again.approve is None  # remembered
    assert other in again.where.value


def test_the_form_names_a_foreign_origin_the_user_chose_without_asking(api):
    port = api.url.rsplit(":", 1)[1]
    profile = Profile(name="p", base_url=api.url, user="demo", login=f"http://localhost:{port}/auth/token")
    form = LoginForm(ApiSession(profile, MemoryStore()), "Log in")
    assert form.approve is None
    assert f"Credentials go to http://localhost:{port} — set by the %login line" in form.where.value


def test_no_line_when_credentials_stay_with_the_api(api):
    form = LoginForm(ApiSession(Profile(name="p", base_url=api.url, user="demo"), MemoryStore()), "Log in")
    assert form.approve is None and form.where.value == ""


def test_a_password_that_appears_in_the_message_is_hidden_and_still_nothing_is_sent(project_session, api):
    """The message names the project folder; a password that happens to be part of it is
    redacted, and the error is the same kind (no crash rebuilding it)."""
    session, _ = project_session
    with pytest.raises(ApprovalNeeded) as info:
        session.login("demo", "repo")  # the folder is .../repo
    assert "/repo" not in str(info.value) and "●●●●" in str(info.value)
    assert api.stats()["password_grants"] == 0 and api.stats()["login_failures"] == 0


def test_an_approval_that_cannot_be_recorded_sends_nothing(project_session, api):
    session, _ = project_session
    session.approvals.path.parent.mkdir(parents=True, exist_ok=True)
    session.approvals.path.write_text("[broken\n")
    form = LoginForm(session, "Log in")
    form.approve.value = True
    form.secret.value = "penguins"
    form.login_button.click()
    form.step()
    assert not form.state.finished and "not valid TOML" in form.message.value
    assert api.stats()["password_grants"] == 0 and api.stats()["login_failures"] == 0


def test_a_click_that_overtakes_the_tick_still_logs_in(project_session, api):
    """Widget messages may be handled concurrently: the click on Log in can arrive just
    before the checkbox's value. The tick then completes that login."""
    session, _ = project_session
    form = LoginForm(session, "Log in")
    form.secret.value = "penguins"
    form.login_button.click()
    form.step()
    assert not form.state.finished and api.stats()["password_grants"] == 0
    form.approve.value = True
    form.step()
    assert form.state.done, form.message.value
    assert api.stats()["password_grants"] == 1


def test_a_tick_alone_sends_nothing(project_session, api):
    session, _ = project_session
    form = LoginForm(session, "Log in")
    form.secret.value = "penguins"
    form.approve.value = True
    assert not form.step()
    assert api.stats()["password_grants"] == 0
    assert not session.approvals.path.exists()
