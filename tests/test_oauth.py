"""OAuth 2.0 / OpenID Connect logins against a real provider (oidc-provider on Node).

The provider and the API it protects run on 127.0.0.1 (tests/idp). A person's part
(device approval, sign-in, consent) goes through the provider's own pages with form
posts (tests/idp/person.py). The API checks every token at the provider.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
from typing import Any

import pytest
import requests

from session_magics.errors import LoginError, NoFrontendError, ProfileError, SessionExpired
from session_magics.oauth import OAuthSession, OAuthSettings, pkce_pair
from session_magics.profile import Profile
from session_magics.store import KeyringStore, MemoryStore
from tests.conditions import wait_until
from tests.idp.person import Person
from tests.idp.servers import CLIENT_SECRET
from tests.ipython_helpers import shell_factory

SECRET_ENV = "SM_TEST_CLIENT_SECRET"


@pytest.fixture
def new_shell(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with shell_factory(tmp_path) as make:
        yield make


def session_for(idp, api, flow, store=None, **settings):
    defaults: dict[str, Any] = {"issuer": idp.issuer, "client_id": "notebook", "scope": "openid profile"}
    if flow == "client":
        defaults.update(client_id="robot", client_secret_env=SECRET_ENV, scope="read")
    oauth = OAuthSettings(flow=flow, **{**defaults, **settings})
    profile = Profile(name="p", base_url=api.url, oauth=oauth)
    return OAuthSession(profile, store or MemoryStore())


def device_login(session, person="ada"):
    login = session.device_login().begin()
    login.start_in_thread()
    Person(person).approve_device(login.link)
    assert login.wait(60), "the device login did not end"
    login.outcome(60)
    return login


# --------------------------------------------------------------------- core flows


def test_client_credentials_renews_silently_before_expiry(idp_factory, oauth_api_factory, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    idp = idp_factory(access_ttl=2)
    api = oauth_api_factory(idp)
    s = session_for(idp, api, "client")
    s.leeway = 0.5
    first = s.login_client()
    assert first.user == "robot" and first.refresh_token is None and first.scope == "read"
    assert s.request("GET", "/me").json()["client_id"] == "robot"
    wait_until(lambda: first.is_expired(0.5), what="the access token to expire")
    again = s.request("GET", "/me")
    assert again.status_code == 200
    assert s.token is not None and s.token.access_token != first.access_token
    assert 401 not in api.statuses()  # renewed before it was sent, not after a refusal
    assert not api.saw(CLIENT_SECRET)


def test_device_flow_polls_until_approved_and_the_api_accepts_the_token(idp, oauth_api):
    s = session_for(idp, oauth_api, "device")
    login = device_login(s, "ada")
    assert login.polls >= 1 and login.interval == 1
    token = s.token
    assert token is not None and token.user == "ada" and token.refresh_token
    assert token.issuer == idp.issuer and token.scope == "openid profile"
    assert s.request("GET", "/me").json()["sub"] == "ada"
    # What went to the API: the access token, nothing else.
    assert oauth_api.saw(token.access_token)
    assert not oauth_api.saw(token.refresh_token)
    assert not oauth_api.saw(login._device_code)


def test_device_flow_refused_at_the_provider_ends_with_access_denied(idp, oauth_api):
    s = session_for(idp, oauth_api, "device")
    login = s.device_login().begin()
    login.start_in_thread()
    Person().approve_device(login.verification_uri, login.user_code, deny=True)
    assert login.wait(30)
    with pytest.raises(SessionExpired, match="access_denied"):
        login.outcome(30)
    assert s.token is None


def test_device_code_that_expires_ends_with_a_clear_message(idp_factory, oauth_api_factory):
    idp = idp_factory(device_ttl=2)
    s = session_for(idp, oauth_api_factory(idp), "device")
    login = s.device_login().begin()
    login.start_in_thread()
    assert login.wait(30)
    with pytest.raises(SessionExpired, match="expired"):
        login.outcome(30)


def test_slow_down_adds_five_seconds_to_the_interval(idp_factory, oauth_api_factory):
    idp = idp_factory(slow_down=1, recorded=True)
    s = session_for(idp, oauth_api_factory(idp), "device")
    login = s.device_login().begin()
    login.start_in_thread()
    wait_until(lambda: login.interval == 6, what="the interval to grow")  # 1 s + 5 s (RFC 8628 §3.5)
    Person().approve_device(login.link)
    assert login.wait(30)
    login.outcome(30)
    polls = [r for r in idp.proxy.requests() if r["path"] == "/token" and b"device_code" in r["body"]]
    assert json.loads(polls[0]["answer"])["error"] == "slow_down"
    assert polls[1]["at"] - polls[0]["at"] >= 5.5  # waited the longer interval
    assert len(polls) == login.polls >= 2


def test_code_flow_with_pkce_through_the_loopback_listener(idp, oauth_api):
    s = session_for(idp, oauth_api, "code")
    login = s.code_login().begin()
    assert login.redirect_uri.startswith("http://127.0.0.1:") and login.redirect_uri.endswith("/callback")
    login.start_in_thread()
    assert "code_challenge_method=S256" in login.authorize_url
    assert login._verifier not in login.authorize_url  # only its hash travels through the browser
    # A page that guesses the listener's port cannot log the kernel in: wrong state.
    forged = requests.get(login.redirect_uri, params={"code": "x", "state": "guess"}, timeout=10)
    assert forged.status_code == 400 and login.rejected == 1 and not login.done.is_set()
    redirected = Person("bob").sign_in(login.authorize_url, login.redirect_uri)
    page = requests.get(redirected, timeout=10)
    assert page.status_code == 200 and "Signed in" in page.text
    assert login.wait(30)
    login.outcome(30)
    assert s.token is not None and s.token.user == "bob"
    assert s.request("GET", "/me").json()["sub"] == "bob"
    with pytest.raises(requests.ConnectionError):  # the listener is gone
        requests.get(login.redirect_uri, timeout=2)
    assert not oauth_api.saw(login._verifier) and not oauth_api.saw(s.token.refresh_token)


def test_code_flow_refused_sign_in(idp, oauth_api):
    s = session_for(idp, oauth_api, "code")
    login = s.code_login().begin()
    login.start_in_thread()
    redirected = Person().sign_in(login.authorize_url, login.redirect_uri, deny=True)
    requests.get(redirected, timeout=10)
    assert login.wait(30)
    with pytest.raises(SessionExpired, match="access_denied"):
        login.outcome(30)


def test_pasted_redirect_address_completes_the_code_flow(idp, oauth_api):
    s = session_for(idp, oauth_api, "code")
    login = s.code_login().begin()
    login.start_in_thread()
    redirected = Person().sign_in(login.authorize_url, login.redirect_uri)
    assert not login.complete(redirected.replace("state=", "state=x"))
    assert login.complete(redirected)  # what a person pastes when the browser cannot reach the kernel
    assert login.wait(30)
    login.outcome(30)
    assert s.token is not None


def test_refresh_rotates_and_two_kernels_spend_one_refresh_token_once(
    idp_factory, oauth_api_factory, memory_keyring, tmp_path
):
    idp = idp_factory(access_ttl=3)
    api = oauth_api_factory(idp)
    lock = tmp_path / "keyring.lock"
    a = session_for(idp, api, "device", store=KeyringStore(memory_keyring, lock_path=lock))
    device_login(a)
    first = a.token
    b = session_for(idp, api, "device", store=KeyringStore(memory_keyring, lock_path=lock))
    assert b.token is not None and b.token.access_token == first.access_token
    a.leeway = b.leeway = 0.5
    wait_until(lambda: first.is_expired(0.5), what="the access token to expire")
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def go(name, session):
        barrier.wait()
        results[name] = session.request("GET", "/me").status_code

    threads = [threading.Thread(target=go, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"a": 200, "b": 200}
    assert a.token.access_token == b.token.access_token != first.access_token
    assert a.token.refresh_token != first.refresh_token  # rotated
    # Had both spent the old refresh token, the provider would have revoked the grant.
    assert idp.introspect(a.token.access_token)["active"] is True


def test_expired_refresh_token_means_a_new_login_not_an_error(idp_factory, oauth_api_factory):
    idp = idp_factory(access_ttl=2)
    api = oauth_api_factory(idp)
    s = session_for(idp, api, "device")
    device_login(s)
    old = s.token
    idp.revoke(old.refresh_token)
    assert s.refresh(stale=old) is None  # a person has to log in again
    with pytest.raises(SessionExpired):
        s.request("GET", "/me")


def test_logout_revokes_at_the_issuer(idp, oauth_api):
    s = session_for(idp, oauth_api, "device")
    device_login(s)
    token = s.token
    assert s.logout() == []
    assert idp.introspect(token.access_token)["active"] is False  # the grant was revoked
    assert s.token is None


def test_the_id_token_never_becomes_the_access_token(idp, oauth_api):
    s = session_for(idp, oauth_api, "device")
    with pytest.raises(LoginError, match="access_token"):
        s._token_from({"id_token": "a.b.c", "token_type": "Bearer"}, previous=None, nonce=None, user=None)


def test_pkce_pair_is_s256():
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected


# ----------------------------------------------------------------- discovery


def test_discovery_merges_both_documents_and_checks_the_issuer(idp, oauth_api, recorder):
    s = session_for(idp, oauth_api, "device")
    ep = s.endpoints
    assert ep.device == f"{idp.issuer}/device/auth" and ep.revoke == f"{idp.issuer}/token/revocation"
    assert ep.discovered[0].endswith("/.well-known/openid-configuration")  # (8.x serves only this one)
    wrong = session_for(idp, oauth_api, "device", issuer=recorder.url)  # answers JSON without our issuer
    with pytest.raises(LoginError, match="issuer"):
        wrong.endpoints  # noqa: B018


def test_merged_discovery_takes_an_endpoint_listed_in_only_one_document():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from session_magics.demo import ThreadedServer

    box: dict[str, str] = {}

    async def oidc(request):
        return JSONResponse({"issuer": box["issuer"], "token_endpoint": box["issuer"] + "/token"})

    async def rfc8414(request):
        return JSONResponse(
            {"issuer": box["issuer"], "device_authorization_endpoint": box["issuer"] + "/device"}
        )

    app = Starlette(
        routes=[
            Route("/.well-known/openid-configuration", oidc),
            Route("/.well-known/oauth-authorization-server", rfc8414),
        ]
    )
    with ThreadedServer(app) as server:
        box["issuer"] = server.url
        oauth = OAuthSettings(flow="device", issuer=server.url, client_id="c")
        s = OAuthSession(Profile(name="x", base_url="http://127.0.0.1:1", oauth=oauth), MemoryStore())
        assert s.endpoints.token == server.url + "/token"
        assert s.endpoints.device == server.url + "/device"


def test_settings_refuse_plain_http_issuers_off_this_machine_and_a_redirect_elsewhere():
    with pytest.raises(ProfileError, match="plain http"):
        OAuthSettings(flow="device", issuer="http://login.example.invalid", client_id="c")
    with pytest.raises(ProfileError, match="redirect-uri"):
        OAuthSettings(
            flow="code", issuer="https://x.invalid", client_id="c", redirect_uri="https://x.invalid/cb"
        )


# ----------------------------------------------------------------- the magics


def test_client_login_in_a_shell_where_nobody_can_answer(idp, oauth_api, new_shell, kr, monkeypatch):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    shell = new_shell()
    run = shell.run(
        f"%login {oauth_api.url} --oauth client --issuer {idp.issuer} --client-id robot "
        f"--client-secret-env {SECRET_ENV} --scope read"
    )
    assert run.error is None, run.all_text
    assert "Logged in as robot" in run.stdout and f"via {idp.issuer}" in run.stdout
    import os

    assert SECRET_ENV not in os.environ  # read once, then kept in memory only
    r = shell.run("%%api -o me\nGET /me\n")
    assert r.error is None and shell.ip.user_ns["me"].data["client_id"] == "robot"
    status = shell.run("%login --status")
    assert f"via {idp.issuer} (client, scopes: read)" in status.stdout
    stored = kr.get_password(f"session-magics {oauth_api.url}", "robot")
    assert stored and CLIENT_SECRET not in stored
    for text in (run.all_text, r.all_text, status.all_text):
        assert CLIENT_SECRET not in text and json.loads(stored)["a"] not in text


@pytest.mark.parametrize("flow", ["device", "code"])
def test_device_and_code_fail_at_once_where_nobody_can_answer(
    idp, oauth_api, new_shell, kr, monkeypatch, flow
):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    shell = new_shell()
    run = shell.run(f"%login {oauth_api.url} --oauth {flow} --issuer {idp.issuer} --client-id notebook")
    assert isinstance(run.error, NoFrontendError)
    assert "--oauth client" in str(run.error) and "refresh token" in str(run.error)


class _Watched(io.StringIO):
    """stderr of a cell, read by a 'person' while the cell runs."""

    def __init__(self, on_text):
        super().__init__()
        self.on_text = on_text

    def write(self, text):
        n = super().write(text)
        self.on_text(self.getvalue())
        return n


def test_device_login_in_a_terminal_prints_link_and_code(idp, oauth_api, new_shell, kr, monkeypatch):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "terminal")
    shell = new_shell()
    approved = threading.Event()

    def person(text):
        match = re.search(r"Open (\S+)\nand enter the code: (\S+)", text)
        if match and not approved.is_set():
            approved.set()
            threading.Thread(target=Person("ada").approve_device, args=(match.group(1),), daemon=True).start()

    err = _Watched(person)
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        res = shell.ip.run_cell(
            f"%login {oauth_api.url} --oauth device --issuer {idp.issuer} --client-id notebook "
            '--scope "openid profile"'
        )
    assert res.error_in_exec is None, err.getvalue()
    assert approved.is_set() and "Logged in as ada" in out.getvalue()
    r = shell.run("%%api -o me\nGET /me\n")
    assert shell.ip.user_ns["me"].data["sub"] == "ada", r.all_text


def _panel_link(shell, start, kind):
    """The link a person sees in the panel displayed since ``start`` (read from its widgets)."""
    from ipywidgets.widgets.widget import _instances

    for data in shell.displayed[start:]:
        view = data.get("application/vnd.jupyter.widget-view+json") if isinstance(data, dict) else None
        if not view:
            continue
        stack = [_instances[view["model_id"]]]
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            value = getattr(widget, "value", "")
            if isinstance(value, str) and kind in value:
                match = re.search(r'href="([^"]+)"', value)
                if match:
                    import html

                    return html.unescape(match.group(1))
    return None


def _in_cell_with_person(shell, source, act, kind):
    """Run ``source``; once its panel shows a link, ``act(link)`` does the person's part."""
    start = len(shell.displayed)
    done = threading.Event()

    def person():
        link = None
        while link is None and not done.is_set():
            link = _panel_link(shell, start, kind)
            time.sleep(0.02)
        if link:
            act(link)

    t = threading.Thread(target=person, daemon=True)
    t.start()
    try:
        return shell.run(source)
    finally:
        done.set()
        t.join(30)


def test_expiry_in_place_device_panel_in_the_cell_and_the_request_completes(
    idp_factory, oauth_api_factory, new_shell, kr, monkeypatch
):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    idp = idp_factory(access_ttl=2)
    api = oauth_api_factory(idp)
    shell = new_shell()
    login_line = (
        f"%login {api.url} --oauth device --issuer {idp.issuer} --client-id notebook --scope 'openid profile'"
    )
    run = _in_cell_with_person(shell, login_line, lambda link: Person("ada").approve_device(link), "/device")
    assert run.error is None, run.all_text
    assert "Logged in as ada" in run.stdout
    token = shell.magics.session().token
    idp.revoke(token.refresh_token)  # the refresh token is gone (revoked, or expired)
    wait_until(lambda: token.is_expired(0), what="the access token to expire")
    cell = "%%api -o me\nGET /me\n"
    run = _in_cell_with_person(shell, cell, lambda link: Person("ada").approve_device(link), "/device")
    assert run.error is None, run.all_text
    assert shell.ip.user_ns["me"].status_code == 200 and shell.ip.user_ns["me"].data["sub"] == "ada"


def test_code_panel_sign_in_link_and_loopback_redirect(idp, oauth_api, new_shell, kr, monkeypatch):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    shell = new_shell()

    def sign_in_at_provider(link):
        person = Person("bob")
        host = link.split("/auth?")[0]
        redirect = re.search(r"redirect_uri=([^&]+)", link).group(1)
        from urllib.parse import unquote

        redirected = person.sign_in(link, unquote(redirect))
        assert redirected.startswith(unquote(redirect)) and host == idp.issuer
        requests.get(redirected, timeout=10)

    line = f"%login {oauth_api.url} --oauth code --issuer {idp.issuer} --client-id notebook --scope openid"
    run = _in_cell_with_person(shell, line, sign_in_at_provider, "Sign in")
    assert run.error is None, run.all_text
    assert "Logged in as bob" in run.stdout
    assert shell.run("%api GET /me").result.data["sub"] == "bob"


def _project_profile(folder, api, issuer, flow="client", **extra):
    keys = {"base_url": api.url, "oauth": flow, "issuer": issuer, **extra}
    if flow == "client":
        keys.update(client_id="robot", client_secret_env=SECRET_ENV, scope="read")
    else:
        keys.setdefault("client_id", "notebook")
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    (folder / "pyproject.toml").write_text(f"[tool.session_magics.profiles.work]\n{body}")


def _approve_in_user_file(tmp_path, origin):
    from session_magics.trust import approval_line

    user_file = tmp_path / "config" / "session-magics" / "config.toml"
    user_file.parent.mkdir(parents=True, exist_ok=True)
    user_file.write_text(f"[approved_credential_origins]\n{approval_line(str(tmp_path.resolve()), origin)}\n")
    return user_file


def _shell_in_the_project(tmp_path, monkeypatch, new_shell):
    """A fresh shell working in the project ``tmp_path``, with nobody to answer a form."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    return new_shell()


def test_a_projects_foreign_issuer_waits_for_approval_and_nothing_reaches_it(
    recorded_idp, oauth_api_factory, tmp_path, new_shell, kr, monkeypatch
):
    """A cloned repository's pyproject.toml names an issuer on another origin than the API:
    where nobody can answer, ApprovalNeeded, and the issuer (a recording proxy in front of
    the provider) receives nothing — not even a discovery request. Approved in the user's
    config file, the same login works, and the client secret goes only to the token endpoint."""
    from session_magics.errors import ApprovalNeeded

    idp = recorded_idp
    api = oauth_api_factory(idp)
    _project_profile(tmp_path, api, idp.issuer)
    shell = _shell_in_the_project(tmp_path, monkeypatch, new_shell)
    run = shell.run("%login --profile work")
    assert isinstance(run.error, ApprovalNeeded), run.all_text
    assert idp.issuer in str(run.error) and "approved_credential_origins" in str(run.error)
    assert "./pyproject.toml" in str(run.error)
    assert idp.proxy.requests() == []  # nothing reached the issuer
    status = shell.run("%login --status")
    assert f"{idp.issuer} (set by ./pyproject.toml), not approved yet" in status.stdout
    assert idp.proxy.requests() == []  # --status asks nobody either

    _approve_in_user_file(tmp_path, idp.issuer)
    run = shell.run("%login --profile work")
    assert run.error is None, run.all_text
    assert "Logged in as robot" in run.stdout and "set by ./pyproject.toml" in run.stdout
    assert shell.run("%api GET /me").result.data["client_id"] == "robot"
    seen = [r for r in idp.proxy.requests() if CLIENT_SECRET in _decoded(r)]
    assert seen and all((r["method"], r["path"]) == ("POST", "/token") for r in seen)
    assert not api.saw(CLIENT_SECRET)


def test_a_projects_issuer_on_the_apis_origin_or_named_by_the_user_needs_no_approval(
    idp, oauth_api, tmp_path, new_shell, kr, monkeypatch
):
    """The same project profile, but the issuer given on the %login line: the user's
    choice, used at once (a project's API origin alone never needs approval either)."""
    _project_profile(tmp_path, oauth_api, "https://login.example.invalid")
    shell = _shell_in_the_project(tmp_path, monkeypatch, new_shell)
    run = shell.run(f"%login --profile work --issuer {idp.issuer}")
    assert run.error is None, run.all_text
    assert "Logged in as robot" in run.stdout and f"via {idp.issuer}" in run.stdout
    assert "set by" not in run.stdout


def test_a_project_cannot_slip_a_foreign_token_endpoint_under_an_approved_issuer(
    recorded_idp, oauth_api_factory, recorder, tmp_path, new_shell, kr, monkeypatch
):
    """An approved issuer does not carry a project's token_url on another origin: that
    origin needs its own approval, and the recorder standing there receives nothing."""
    from session_magics.errors import ApprovalNeeded

    idp = recorded_idp
    api = oauth_api_factory(idp)
    _project_profile(tmp_path, api, idp.issuer, token_url=f"{recorder.url}/token")
    _approve_in_user_file(tmp_path, idp.issuer)
    shell = _shell_in_the_project(tmp_path, monkeypatch, new_shell)
    run = shell.run("%login --profile work")
    assert isinstance(run.error, ApprovalNeeded) and recorder.url in str(run.error), run.all_text
    assert recorder.requests() == []
    assert not any(r["method"] == "POST" for r in idp.proxy.requests())


def test_terminal_asks_before_anything_reaches_a_projects_issuer(
    recorded_idp, oauth_api_factory, tmp_path, new_shell, kr, monkeypatch
):
    """Terminal IPython: [y/N] names the project's issuer; "n" sends nothing, "y" is kept
    in the user's config file and the login goes on."""
    from session_magics.errors import SessionExpired as Expired

    idp = recorded_idp
    api = oauth_api_factory(idp)
    _project_profile(tmp_path, api, idp.issuer)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "terminal")
    questions: list[str] = []
    answers = iter(["n", "y"])

    def person(prompt=""):
        questions.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", person)
    shell = new_shell()
    run = shell.run("%login --profile work")
    assert isinstance(run.error, Expired) and "Not approved" in str(run.error), run.all_text
    assert idp.issuer in questions[0] and idp.proxy.requests() == []
    run = new_shell().run("%login --profile work")
    assert run.error is None, run.all_text
    assert "Logged in as robot" in run.stdout and len(questions) == 2
    assert idp.issuer in (tmp_path / "config" / "session-magics" / "config.toml").read_text()


def test_a_renewal_on_a_later_day_checks_the_approval_again(
    idp_factory, oauth_api_factory, tmp_path, monkeypatch
):
    """The check is made at each sending, not once at the login: with the approval of a
    project's issuer withdrawn from the user file, an expired client-credentials token is
    not renewed (ApprovalNeeded; no POST reaches the issuer) and the request is not sent
    with a stale token either."""
    from session_magics.errors import ApprovalNeeded
    from session_magics.trust import Approvals, SetBy

    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    idp = idp_factory(recorded=True, access_ttl=2)
    api = oauth_api_factory(idp)
    user_file = _approve_in_user_file(tmp_path, idp.issuer)
    (tmp_path / "pyproject.toml").write_text("[tool.session_magics]\n")
    oauth = OAuthSettings(
        flow="client", issuer=idp.issuer, client_id="robot", client_secret_env=SECRET_ENV, scope="read"
    )
    profile = Profile(
        name="p",
        base_url=api.url,
        oauth=oauth,
        set_by={"issuer": SetBy("project", str(tmp_path / "pyproject.toml"))},
    )
    s = OAuthSession(profile, MemoryStore(), approvals=Approvals(user_file))
    s.leeway = 0.5
    first = s.login_client()
    assert s.request("GET", "/me").status_code == 200
    user_file.write_text("")  # the approval is withdrawn
    posts_before = [r for r in idp.proxy.requests() if r["method"] == "POST"]
    current = s.token  # (the first one, or its renewal if the request above came late)
    assert first.access_token and current is not None
    wait_until(  # expired for the provider too (its clock counts whole seconds)
        lambda: (
            requests.get(
                f"{api.url}/me", headers={"Authorization": f"Bearer {current.access_token}"}, timeout=10
            ).status_code
            == 401
        ),
        what="the access token to expire at the provider",
    )
    seen_at_api = len(api.requests())
    with pytest.raises(ApprovalNeeded, match="approved_credential_origins"):
        s.request("GET", "/me")
    assert [r for r in idp.proxy.requests() if r["method"] == "POST"] == posts_before
    assert len(api.requests()) - seen_at_api == 1  # the one request with the old token


def _discovery_server(token_origin):
    """An issuer whose discovery document puts its token endpoint on ``token_origin``."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from session_magics.demo import ThreadedServer

    box: dict[str, str] = {}

    async def oidc(request):
        return JSONResponse({"issuer": box["issuer"], "token_endpoint": token_origin + "/token"})

    server = ThreadedServer(Starlette(routes=[Route("/.well-known/openid-configuration", oidc)]))
    return server, box


def test_a_discovered_token_endpoint_elsewhere_needs_that_origin_approved_for_a_projects_issuer(
    recorder, tmp_path, new_shell, kr, monkeypatch
):
    """Discovery cannot move credentials to an origin nobody approved: the project's issuer
    is approved, its discovery document names a token endpoint on another origin (the
    recorder), and the client secret is not sent there until that origin is approved too.
    Named by the user instead, the issuer's own document is followed (as Google's is:
    its token endpoint is on another host than its issuer)."""
    from session_magics.errors import ApprovalNeeded

    server, box = _discovery_server(recorder.url)
    with server:
        box["issuer"] = server.url
        api = type("Api", (), {"url": "http://127.0.0.1:9"})()
        _project_profile(tmp_path, api, server.url)
        _approve_in_user_file(tmp_path, server.url)
        shell = _shell_in_the_project(tmp_path, monkeypatch, new_shell)
        run = shell.run("%login --profile work")
        assert isinstance(run.error, ApprovalNeeded), run.all_text
        assert recorder.url in str(run.error) and "token endpoint" in str(run.error)
        assert recorder.requests() == []

        run = new_shell().run(f"%login --profile work --issuer {server.url}")  # a fresh kernel
        posts = [r for r in recorder.requests() if r["method"] == "POST" and r["path"] == "/token"]
        assert len(posts) == 1 and run.error is not None, run.all_text  # sent (the recorder answers no token)


def test_approval_panel_in_the_cell_then_the_device_login(
    recorded_idp, oauth_api_factory, tmp_path, new_shell, kr, monkeypatch
):
    """In a notebook the cell shows where credentials would go, with a checkbox: nothing is
    requested from the project's issuer before the tick; after it, the device panel, the
    login, and the approval kept in the user's config file."""
    from ipywidgets.widgets.widget import _instances

    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    idp = recorded_idp
    api = oauth_api_factory(idp)
    _project_profile(tmp_path, api, idp.issuer, flow="device", scope="openid profile")
    monkeypatch.chdir(tmp_path)
    shell = new_shell()
    start = len(shell.displayed)
    seen_before_tick: list[int] = []

    def tick_box():
        while True:
            for data in shell.displayed[start:]:
                view = isinstance(data, dict) and data.get("application/vnd.jupyter.widget-view+json")
                stack = [_instances[view["model_id"]]] if view else []
                while stack:
                    widget = stack.pop()
                    stack.extend(getattr(widget, "children", ()))
                    if "Send my credentials to" in str(getattr(widget, "description", "")):
                        seen_before_tick.append(len(idp.proxy.requests()))
                        widget.value = True  # the person ticks the box
                        return
            time.sleep(0.02)

    ticker = threading.Thread(target=tick_box, daemon=True)
    ticker.start()
    run = _in_cell_with_person(
        shell, "%login --profile work", lambda link: Person("ada").approve_device(link), "/device"
    )
    ticker.join(5)
    assert run.error is None, run.all_text
    assert seen_before_tick == [0]  # the issuer heard nothing before the tick
    assert "Logged in as ada" in run.stdout
    user_file = tmp_path / "config" / "session-magics" / "config.toml"
    assert idp.issuer in user_file.read_text()


def test_options_of_oauth_need_oauth(new_shell):
    shell = new_shell()
    run = shell.run("%login http://127.0.0.1:9 --issuer http://127.0.0.1:8")
    assert isinstance(run.error, ProfileError) and "only apply with --oauth" in str(run.error)


# ------------------------------------------------------ where each secret went


def _decoded(record):
    """A recorded request as text, with HTTP Basic credentials decoded."""
    import base64
    from urllib.parse import unquote_plus

    parts = [record["path"], unquote_plus(record["query"]), unquote_plus(record["body"].decode("latin-1"))]
    for key, value in record["raw_headers"]:
        parts.append(value)
        if key == "authorization" and value.startswith("Basic "):
            parts.append(unquote_plus(base64.b64decode(value[6:]).decode()))
    return "\n".join(parts)


def test_each_secret_goes_only_where_it_may(recorded_idp, oauth_api_factory, monkeypatch):
    """At recording servers: the access token only at the API; the client secret, refresh
    tokens, PKCE verifier and device code only in POSTs to the issuer's token, device and
    revocation endpoints; the ID token nowhere."""
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    idp = recorded_idp
    api = oauth_api_factory(idp)
    sent_secrets: dict[str, str] = {"client secret": CLIENT_SECRET}

    device = session_for(idp, api, "device")
    sent_secrets["device code"] = device_login(device)._device_code
    device.request("GET", "/me")
    device.refresh(stale=device.token)  # a real refresh (rotation)
    device.request("GET", "/me")
    assert device.logout() == []

    code = session_for(idp, api, "code")
    login = code.code_login().begin()
    login.start_in_thread()
    requests.get(Person("bob").sign_in(login.authorize_url, login.redirect_uri), timeout=10)
    assert login.wait(30)
    login.outcome(30)
    sent_secrets["verifier"] = login._verifier
    code.request("GET", "/me")
    code.refresh(stale=code.token)
    assert code.logout() == []

    robot = session_for(idp, api, "client")
    robot.login_client()
    robot.request("GET", "/me")
    robot.refresh(stale=robot.token)
    robot.request("GET", "/me")
    last_robot_token = robot.token.access_token
    assert robot.logout() == []

    issued: dict[str, list[str]] = {"access_token": [], "refresh_token": [], "id_token": []}
    for record in idp.proxy.requests():
        if record["path"] == "/token" and record["status"] == 200:
            answer = json.loads(record["answer"])
            for key in issued:
                if key in answer:
                    issued[key].append(answer[key])
    assert len(issued["refresh_token"]) == 4 and len(issued["id_token"]) == 4
    assert len(issued["access_token"]) == 6

    credential_endpoints = {"/token", "/device/auth", "/token/revocation"}
    for name, secret in [
        *sent_secrets.items(),
        *(("refresh token", t) for t in issued["refresh_token"]),
    ]:
        assert not api.saw(secret), name
        seen = [r for r in idp.proxy.requests() if secret in _decoded(r)]
        assert seen, f"the {name} never reached the issuer"
        assert all(r["method"] == "POST" and r["path"] in credential_endpoints for r in seen), name
        assert all(secret not in r["query"] for r in seen), name
    for id_token in issued["id_token"]:
        assert not api.saw(id_token)
        assert not any(id_token in _decoded(r) for r in idp.proxy.requests())
    for access in issued["access_token"]:
        at_issuer = [r for r in idp.proxy.requests() if access in _decoded(r)]
        if access == last_robot_token:  # no refresh token to revoke: the access token is revoked
            assert [(r["method"], r["path"]) for r in at_issuer] == [("POST", "/token/revocation")]
        else:
            assert at_issuer == []
    for record in api.requests():
        auth = dict(record["raw_headers"]).get("authorization", "")
        assert auth.removeprefix("Bearer ") in issued["access_token"]


# ------------------------------------------------------------ attacks and limits


def test_a_code_login_nobody_finishes_ends_at_login_timeout_with_its_listener_closed(
    idp, oauth_api, new_shell, kr, monkeypatch
):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    shell = new_shell()
    shell.run("%config SessionMagics.login_timeout = 1.5")
    start = len(shell.displayed)
    run = shell.run(f"%login {oauth_api.url} --oauth code --issuer {idp.issuer} --client-id notebook")
    assert isinstance(run.error, SessionExpired) and "No login within 1.5 s" in str(run.error)
    link = _panel_link(shell, start, "Sign in")
    from urllib.parse import parse_qs, urlsplit

    redirect_uri = parse_qs(urlsplit(link).query)["redirect_uri"][0]
    wait_until(lambda: _refused(redirect_uri), what="the listener to close")


def _refused(url):
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_code_login_in_a_terminal_prints_and_opens_the_link(
    idp, oauth_api, new_shell, kr, monkeypatch, tmp_path
):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "terminal")
    opened = tmp_path / "opened.txt"
    monkeypatch.setenv("BROWSER", f"sh -c 'echo \"$0\" > {opened}' %s")  # webbrowser runs $BROWSER
    shell = new_shell()

    def person(text):
        match = re.search(r"Sign in at: (\S+)\n", text)
        if match and not getattr(person, "done", False):
            person.done = True
            url = match.group(1)
            redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]

            def act():
                requests.get(Person("cy").sign_in(url, redirect), timeout=10)

            threading.Thread(target=act, daemon=True).start()

    from urllib.parse import parse_qs, urlsplit

    err, out = _Watched(person), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        res = shell.ip.run_cell(
            f"%login {oauth_api.url} --oauth code --issuer {idp.issuer} --client-id notebook --scope openid"
        )
    assert res.error_in_exec is None, err.getvalue()
    assert "Logged in as cy" in out.getvalue()
    wait_until(opened.exists, what="$BROWSER to be run")
    assert opened.read_text().strip().startswith(f"{idp.issuer}/auth?")


def _jwt(claims):
    import jwt

    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_id_token_checks_issuer_audience_expiry_and_nonce(idp, oauth_api):
    s = session_for(idp, oauth_api, "code")
    good = {"iss": idp.issuer, "aud": "notebook", "exp": time.time() + 60, "sub": "ada", "nonce": "n1"}
    assert s._id_token_claims(_jwt(good), "n1")["sub"] == "ada"
    for change, words in [
        ({"iss": "http://127.0.0.1:1"}, "another issuer"),
        ({"aud": "someone-else"}, "another client"),
        ({"exp": time.time() - 3600}, "expired"),
        ({"nonce": "n2"}, "nonce"),
    ]:
        with pytest.raises(LoginError, match=words):
            s._id_token_claims(_jwt({**good, **change}), "n1")


def test_an_issuer_that_echoes_secrets_in_its_errors_shows_none_of_them(monkeypatch):
    """A token endpoint that repeats what it got (refresh token, client secret) in its error
    description: the message keeps the error, not the secrets."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from session_magics.demo import ThreadedServer
    from session_magics.tokens import Token

    box: dict[str, str] = {}

    async def discovery(request):
        issuer = box["issuer"]
        return JSONResponse(
            {
                "issuer": issuer,
                "token_endpoint": issuer + "/token",
                "device_authorization_endpoint": issuer + "/d",
            }
        )

    async def token(request):
        body = (await request.body()).decode()
        echoed = f"{body} {request.headers.get('authorization', '')}"
        return JSONResponse({"error": "invalid_grant", "error_description": echoed}, status_code=400)

    app = Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/token", token, methods=["POST"]),
        ]
    )
    secret = "client-secret-" + "s" * 20
    monkeypatch.setenv(SECRET_ENV, secret)
    with ThreadedServer(app) as server:
        box["issuer"] = server.url
        oauth = OAuthSettings(
            flow="client", issuer=server.url, client_id="robot", client_secret_env=SECRET_ENV
        )
        s = OAuthSession(Profile(name="x", base_url="http://127.0.0.1:1", oauth=oauth), MemoryStore())
        with pytest.raises(LoginError) as caught:
            s.login_client()
        text = str(caught.value)
        assert "invalid_grant" in text and "grant_type=client_credentials" in text
        import base64

        basic = base64.b64encode(f"robot:{secret}".encode()).decode()
        assert secret not in text and basic not in text
        # A refresh token echoed back is hidden too.
        refresh = "refresh-" + "r" * 30
        oauth2 = OAuthSettings(flow="device", issuer=server.url, client_id="notebook")
        d = OAuthSession(Profile(name="y", base_url="http://127.0.0.1:1", oauth=oauth2), MemoryStore())
        d._token, d._loaded = Token(access_token="a" * 20, refresh_token=refresh, issuer=server.url), True
        monkeypatch.delenv(SECRET_ENV, raising=False)
        with pytest.raises(LoginError) as caught2:
            d._token_request({"grant_type": "refresh_token", "refresh_token": refresh}, secrets=(refresh,))
        assert "invalid_grant" in str(caught2.value) and refresh not in str(caught2.value)


def test_a_stored_token_of_another_issuer_is_not_used_and_its_refresh_token_not_sent(
    idp, oauth_api, recorder, memory_keyring, tmp_path
):
    from session_magics.tokens import Token

    store = KeyringStore(memory_keyring, lock_path=tmp_path / "lock")
    s = session_for(idp, oauth_api, "device", store=store)
    foreign = Token(
        access_token="a" * 24,
        refresh_token="r" * 24,
        user="ada",
        issuer=recorder.url,
        expires_at=time.time() - 10,
    )
    s.profile.user = "ada"
    store.save(s.profile, foreign)
    fresh = session_for(idp, oauth_api, "device", store=store)
    fresh.profile.user = "ada"
    assert fresh.token is None
    assert fresh.refresh() is None
    assert not recorder.saw("r" * 24) and not oauth_api.saw("r" * 24)


def test_client_secret_from_the_keyring_when_no_variable_names_one(
    idp, oauth_api, kr, new_shell, monkeypatch
):
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    shell = new_shell()
    line = f"%login {oauth_api.url} --oauth client --issuer {idp.issuer} --client-id robot --scope read"
    missing = shell.run(line)
    assert isinstance(missing.error, LoginError)
    assert f"keyring set 'session-magics client {idp.issuer}' robot" in str(missing.error)
    kr.set_password(f"session-magics client {idp.issuer}", "robot", CLIENT_SECRET)  # `keyring set ...`
    run = shell.run(line)
    assert run.error is None and "Logged in as robot" in run.stdout, run.all_text
    assert CLIENT_SECRET not in run.all_text
    assert not oauth_api.saw(CLIENT_SECRET)
