"""OAuth 2.0 / OpenID Connect logins against a real provider (oidc-provider on Node).

The provider and the API it protects run on 127.0.0.1 (demo/idp). A person's part
(device approval, sign-in, consent) goes through the provider's own pages with form
posts (tests/idp/person.py). The API checks every token at the provider.

Where each secret may go, and the attacks on that (a cloned project naming the issuer,
discovery documents and redirects pointing elsewhere, forged callbacks, odd answers), is
tested in tests/security/test_oauth_confinement.py: those cases are the figures of
docs/SECURITY.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
from typing import Any

import pytest
import requests

from session_magics.errors import LoginError, NoFrontendError, ProfileError, SessionExpired
from session_magics.oauth import OAuthSession, OAuthSettings, pkce_pair
from session_magics.profile import Profile
from session_magics.store import KeyringStore, MemoryStore
from tests.conditions import wait_until
from tests.idp.logins import SECRET_ENV, device_login, in_cell_with_person, session_for
from tests.idp.person import Person
from tests.idp.servers import CLIENT_SECRET
from tests.ipython_helpers import shell_factory


@pytest.fixture
def new_shell(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with shell_factory(tmp_path) as make:
        yield make


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


@pytest.mark.parametrize("how", ["cancel", "abandon"])
def test_a_token_arriving_after_the_person_gave_up_is_dropped_not_stored(
    idp_factory, oauth_api_factory, how
):
    """Cancel (or an interrupt, which abandons the wait) while the poll that carries the
    token is already on its way: the token that arrives is not stored, the session holds
    none, and a cancel ends as a cancel."""
    from session_magics.errors import LoginCancelled

    idp = idp_factory(recorded=True)
    store = MemoryStore()
    s = session_for(idp, oauth_api_factory(idp), "device", store=store)
    login = s.device_login().begin()
    login.start_in_thread()
    idp.proxy.hold_tokens()
    try:
        Person("ada").approve_device(login.link)
        assert idp.proxy.token_held.wait(60), "no token answer reached the proxy"
        getattr(login, how)()  # the person gives up while the token is on its way
    finally:
        idp.proxy.release_tokens()
    assert login.wait(60)
    assert login.token is None and s.token is None
    assert store.load(s.profile) is None
    if how == "cancel":
        with pytest.raises(LoginCancelled):
            login.outcome(30)


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
    redirected = Person("bob").sign_in(login.authorize_url, login.redirect_uri)
    page = requests.get(redirected, timeout=10)
    assert page.status_code == 200 and "Signed in" in page.text
    assert login.wait(30)
    login.outcome(30)
    assert s.token is not None and s.token.user == "bob"
    assert s.request("GET", "/me").json()["sub"] == "bob"


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


def test_pkce_pair_is_s256():
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected


# ----------------------------------------------------------------- discovery


def test_discovery_reads_the_providers_document(idp, oauth_api):
    s = session_for(idp, oauth_api, "device")
    ep = s.endpoints
    assert ep.device == f"{idp.issuer}/device/auth" and ep.revoke == f"{idp.issuer}/token/revocation"
    assert ep.discovered[0].endswith("/.well-known/openid-configuration")  # (8.x serves only this one)


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
    run = in_cell_with_person(shell, login_line, lambda link: Person("ada").approve_device(link), "/device")
    assert run.error is None, run.all_text
    assert "Logged in as ada" in run.stdout
    token = shell.magics.session().token
    idp.revoke(token.refresh_token)  # the refresh token is gone (revoked, or expired)
    wait_until(lambda: token.is_expired(0), what="the access token to expire")
    cell = "%%api -o me\nGET /me\n"
    run = in_cell_with_person(shell, cell, lambda link: Person("ada").approve_device(link), "/device")
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
    run = in_cell_with_person(shell, line, sign_in_at_provider, "Sign in")
    assert run.error is None, run.all_text
    assert "Logged in as bob" in run.stdout
    assert shell.run("%api GET /me").result.data["sub"] == "bob"


def test_options_of_oauth_need_oauth(new_shell):
    shell = new_shell()
    run = shell.run("%login http://127.0.0.1:9 --issuer http://127.0.0.1:8")
    assert isinstance(run.error, ProfileError) and "only apply with --oauth" in str(run.error)


# ------------------------------------------- the code flow in a terminal, secrets in the keyring


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
