"""OAuth logins: each secret goes only where it may, whatever an attacker arranges.

The trust model of session_magics/trust.py and docs/SECURITY.md ("What is sent where",
OAuth): the access token only to the API's origin; the client secret, refresh token, PKCE
verifier and device code only in POSTs to the issuer's token, device and revocation
endpoints; the ID token nowhere. The attackers here: a cloned repository whose
pyproject.toml names the issuer or one of its endpoints; an issuer's discovery document
or redirect pointing elsewhere; plain http; a page that guesses the loopback listener's
port; a provider's odd answers. The issuer is the real OpenID provider of demo/idp
(behind a recording proxy where what it received matters) or, for answers no honest
provider gives, a small issuer written for the attack; a recording server on another
port of 127.0.0.1 stands for the attacker's origin. Every test asserts on what the
recording servers received.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from session_magics.demo import ThreadedServer
from session_magics.errors import LoginCancelled, LoginError, ProfileError, SessionExpired, SessionMagicsError
from session_magics.oauth import OAuthSession, OAuthSettings
from session_magics.profile import Profile
from session_magics.store import KeyringStore, MemoryStore
from session_magics.tokens import Token
from session_magics.trust import ApprovalNeeded, Approvals, SetBy, approval_line
from tests.conditions import wait_until
from tests.idp.logins import SECRET_ENV, device_login, in_cell_with_person, session_for
from tests.idp.person import Person
from tests.idp.servers import CLIENT_SECRET
from tests.ipython_helpers import shell_factory
from tests.security.helpers import assert_short_error, shown
from tests.servers import record_of


@pytest.fixture
def new_shell(tmp_path, monkeypatch):
    """``new_shell()``: a fresh InteractiveShell; the client secret of "robot" is in
    $SECRET_ENV and the user's config directory is ``tmp_path/config``."""
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with shell_factory(tmp_path) as make:
        yield make


class AttackIssuer(ThreadedServer):
    """An issuer whose answers the test chooses; every request it receives is recorded.

    Its discovery document (``/.well-known/openid-configuration``) names itself as the
    issuer (or ``claims``' issuer) and lists the endpoints in ``endpoints`` (role ->
    URL; by default ``/token``, ``/device``, ``/revoke``, ``/auth`` on itself), or, with
    ``discovery_to`` set, redirects there. ``/redirect?to=URL&status=307`` redirects;
    every other path answers ``{"error": "invalid_grant"}`` (400)."""

    def __init__(self, **tls: Any) -> None:
        self.endpoints: dict[str, str] = {}
        self.claims: dict[str, Any] = {}
        self.discovery_to: str | None = None
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])
        super().__init__(app, name="attack-issuer", **tls)

    def document(self) -> dict[str, Any]:
        base = self.url
        return {
            "issuer": base,
            "token_endpoint": self.endpoints.get("token", f"{base}/token"),
            "device_authorization_endpoint": self.endpoints.get("device", f"{base}/device"),
            "revocation_endpoint": self.endpoints.get("revoke", f"{base}/revoke"),
            "authorization_endpoint": self.endpoints.get("authorize", f"{base}/auth"),
            **self.claims,
        }

    async def _handle(self, request: Request) -> Response:
        record = await record_of(request)
        with self._lock:
            self._records.append(record)
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            if self.discovery_to:
                return RedirectResponse(self.discovery_to, status_code=302)
            return JSONResponse(self.document())
        if path == "/redirect":
            status = int(request.query_params.get("status", "307"))
            return RedirectResponse(request.query_params["to"], status_code=status)
        return JSONResponse({"error": "invalid_grant"}, status_code=400)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]


@pytest.fixture
def attack_issuer():
    with AttackIssuer() as server:
        yield server


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


def _session(
    issuer, flow="client", *, base_url="http://127.0.0.1:9", set_by=None, approvals=None, **settings
):
    """An OAuthSession at ``issuer`` (the confidential "robot" for ``client``, else the
    public "notebook"); ``set_by``: who named each setting (default: the %login line)."""
    client = (
        {"client_id": "robot", "client_secret_env": SECRET_ENV}
        if flow == "client"
        else {"client_id": "notebook"}
    )
    oauth = OAuthSettings(flow=flow, issuer=issuer, **{**client, **settings})
    profile = Profile(name="p", base_url=base_url, oauth=oauth, set_by=set_by or {})
    return OAuthSession(profile, MemoryStore(), approvals=approvals)


def _stored(session, issuer, *, refresh="r-" + "7" * 30, access="a-" + "4" * 30):
    """``session`` holding an expired token of ``issuer`` with a refresh token (a login of an
    earlier day)."""
    token = Token(
        access_token=access, refresh_token=refresh, user="ada", issuer=issuer, expires_at=time.time() - 10
    )
    session.profile.user = "ada"
    session._token, session._loaded = token, True
    return token


# ----------------------------------------------------------- where each secret went
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


def test_the_id_token_never_becomes_the_access_token(idp, oauth_api):
    s = session_for(idp, oauth_api, "device")
    with pytest.raises(LoginError, match="access_token"):
        s._token_from({"id_token": "a.b.c", "token_type": "Bearer"}, previous=None, nonce=None, user=None)


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


# ------------------------------------------------- the issuer a cloned project names
def _project_profile(folder, api, issuer, flow="client", **extra):
    keys = {"base_url": api.url, "oauth": flow, "issuer": issuer, **extra}
    if flow == "client":
        keys.update(client_id="robot", client_secret_env=SECRET_ENV, scope="read")
    else:
        keys.setdefault("client_id", "notebook")
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    (folder / "pyproject.toml").write_text(f"[tool.session_magics.profiles.work]\n{body}")


def _approve_in_user_file(tmp_path, origin):

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
    assert isinstance(run.error, SessionExpired) and "Not approved" in str(run.error), run.all_text
    assert idp.issuer in questions[0] and idp.proxy.requests() == []
    run = new_shell().run("%login --profile work")
    assert run.error is None, run.all_text
    assert "Logged in as robot" in run.stdout and len(questions) == 2
    assert idp.issuer in (tmp_path / "config" / "session-magics" / "config.toml").read_text()


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

    def approval_box():
        for data in shell.displayed[start:]:
            view = isinstance(data, dict) and data.get("application/vnd.jupyter.widget-view+json")
            stack = [_instances[view["model_id"]]] if view and view["model_id"] in _instances else []
            while stack:
                widget = stack.pop()
                stack.extend(getattr(widget, "children", ()))
                if "Send my credentials to" in str(getattr(widget, "description", "")):
                    return widget
        return None

    def tick_box():
        box = wait_until(approval_box, 60, "the approval checkbox", poll=0.02)
        seen_before_tick.append(len(idp.proxy.requests()))
        box.value = True  # the person ticks the box

    ticker = threading.Thread(target=tick_box, daemon=True)
    ticker.start()
    run = in_cell_with_person(
        shell, "%login --profile work", lambda link: Person("ada").approve_device(link), "/device"
    )
    ticker.join(5)
    assert run.error is None, run.all_text
    assert seen_before_tick == [0]  # the issuer heard nothing before the tick
    assert "Logged in as ada" in run.stdout
    user_file = tmp_path / "config" / "session-magics" / "config.toml"
    assert idp.issuer in user_file.read_text()


def test_a_renewal_on_a_later_day_checks_the_approval_again(
    idp_factory, oauth_api_factory, tmp_path, monkeypatch
):
    """The check is made at each sending, not once at the login: with the approval of a
    project's issuer withdrawn from the user file, an expired client-credentials token is
    not renewed (ApprovalNeeded; no POST reaches the issuer) and the request is not sent
    with a stale token either."""

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


# ---------------------------------------------------------------- http
def test_settings_refuse_plain_http_issuers_off_this_machine_and_a_redirect_elsewhere():
    with pytest.raises(ProfileError, match="plain http"):
        OAuthSettings(flow="device", issuer="http://login.example.invalid", client_id="c")
    with pytest.raises(ProfileError, match="redirect-uri"):
        OAuthSettings(
            flow="code", issuer="https://x.invalid", client_id="c", redirect_uri="https://x.invalid/cb"
        )


def test_a_discovered_endpoint_in_plain_http_is_refused_before_anything_is_sent(attack_issuer):
    """A discovery document that downgrades the token endpoint to plain http off this
    machine: refused with one line; the client secret goes nowhere."""
    attack_issuer.endpoints["token"] = "http://login.example.invalid/token"
    s = _session(attack_issuer.url)
    with pytest.raises(ProfileError, match="plain http") as caught:
        s.login_client()
    assert "token_endpoint" in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    assert {r["method"] for r in attack_issuer.requests()} == {"GET"}  # the discovery documents only


@pytest.fixture
def tls_issuer(tmp_path, monkeypatch):
    """An :class:`AttackIssuer` over https (a certificate from a throwaway CA)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path, ca_path = (str(tmp_path / n) for n in ("issuer.pem", "issuer.key", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_path)
    with AttackIssuer(ssl_certfile=cert_path, ssl_keyfile=key_path) as server:
        yield server


def test_a_token_endpoint_redirecting_from_https_to_http_gets_nothing_there(tls_issuer, monkeypatch):
    """https → http on the same host and port is another origin: the token request is not
    re-sent in plain text (307 keeps the body: the client secret would travel unencrypted)."""
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    port = tls_issuer.url.rsplit(":", 1)[1]
    plain = f"http://127.0.0.1:{port}/token"
    tls_issuer.endpoints["token"] = f"{tls_issuer.url}/redirect?to={plain}&status=307"
    s = _session(tls_issuer.url)
    with pytest.raises(SessionMagicsError, match="redirected the credentials") as caught:
        s.login_client()
    assert plain in str(caught.value) and "not followed" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)
    posted = [r for r in tls_issuer.requests() if r["method"] == "POST"]
    assert [r["path"] for r in posted] == ["/redirect"]  # the one POST, over https


# ------------------------------------------------- credential requests redirected away
@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_token_endpoint_redirecting_elsewhere_gets_no_client_secret_there(
    attack_issuer, recorder, new_shell, kr, monkeypatch, status
):
    """The issuer's token endpoint answers a redirect to another origin: the client
    credentials login ends with one line naming the target; the recorder there receives
    nothing (307 and 308 would re-send the body, 302 would send a GET)."""
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    attack_issuer.endpoints["token"] = (
        f"{attack_issuer.url}/redirect?to={recorder.url}/collect&status={status}"
    )
    run = new_shell().run(
        f"%login http://127.0.0.1:9 --oauth client --issuer {attack_issuer.url} --client-id robot "
        f"--client-secret-env {SECRET_ENV}"
    )
    assert_short_error(run, SessionMagicsError, "redirected the credentials", recorder.url, "not followed")
    assert recorder.requests() == []
    assert CLIENT_SECRET not in shown(run)
    posted = [r for r in attack_issuer.requests() if r["method"] == "POST"]
    assert len(posted) == 1 and posted[0]["path"] == "/redirect"  # one request, to the issuer itself


def test_a_refresh_redirected_elsewhere_sends_no_refresh_token_there(attack_issuer, recorder):
    attack_issuer.endpoints["token"] = f"{attack_issuer.url}/redirect?to={recorder.url}/collect&status=307"
    s = _session(attack_issuer.url, "device")
    token = _stored(s, attack_issuer.url)
    with pytest.raises(SessionMagicsError, match="redirected the credentials") as caught:
        s.refresh(stale=token)
    assert token.refresh_token not in str(caught.value)
    assert recorder.requests() == []
    assert any(
        token.refresh_token in _decoded(r) for r in attack_issuer.requests()
    )  # sent to the issuer only


def test_a_device_authorization_redirected_elsewhere_is_not_followed(attack_issuer, recorder):
    attack_issuer.endpoints["device"] = f"{attack_issuer.url}/redirect?to={recorder.url}/collect&status=308"
    s = _session(attack_issuer.url, "device", scope="openid")
    with pytest.raises(SessionMagicsError, match="redirected the credentials"):
        s.device_login().begin()
    assert recorder.requests() == []


def test_a_revocation_redirected_elsewhere_sends_no_token_there(attack_issuer, recorder):
    """%logout: the revocation endpoint redirects away; neither token goes there, the
    failure is a note, and the token is deleted here all the same."""
    attack_issuer.endpoints["revoke"] = f"{attack_issuer.url}/redirect?to={recorder.url}/collect&status=307"
    s = _session(attack_issuer.url, "device")
    token = _stored(s, attack_issuer.url)
    notes = s.logout()
    assert len(notes) == 1 and "redirected the credentials" in notes[0] and recorder.url in notes[0]
    assert token.refresh_token not in notes[0] and token.access_token not in notes[0]
    assert recorder.requests() == []
    assert s.token is None


# ------------------------------------------------------------------ discovery
def test_a_discovery_document_naming_another_issuer_is_not_used(attack_issuer, recorder):
    """A document that describes another issuer (a mix-up attack: its endpoints are the
    attacker's) is refused whole; the client secret goes nowhere."""
    attack_issuer.claims["issuer"] = recorder.url
    attack_issuer.endpoints["token"] = f"{recorder.url}/token"
    s = _session(attack_issuer.url)
    with pytest.raises(LoginError, match="describes the issuer") as caught:
        s.login_client()
    assert recorder.url in str(caught.value)
    assert recorder.requests() == []
    assert {r["method"] for r in attack_issuer.requests()} == {"GET"}


def test_a_projects_issuer_whose_discovery_redirects_elsewhere_sends_no_credential_there(
    attack_issuer, tmp_path, new_shell, kr, monkeypatch
):
    """The project's issuer is approved, but its discovery document redirects to another
    origin, which serves a document naming the same issuer and a token endpoint of its own.
    That origin carries no approval: ApprovalNeeded names it, and it receives no credential
    — at most the redirected discovery GET, with nothing secret in it."""
    with AttackIssuer() as mirror:
        mirror.claims["issuer"] = attack_issuer.url
        attack_issuer.discovery_to = f"{mirror.url}/.well-known/openid-configuration"
        api = type("Api", (), {"url": "http://127.0.0.1:9"})()
        _project_profile(tmp_path, api, attack_issuer.url)
        _approve_in_user_file(tmp_path, attack_issuer.url)
        shell = _shell_in_the_project(tmp_path, monkeypatch, new_shell)
        run = shell.run("%login --profile work")
        assert_short_error(run, ApprovalNeeded, mirror.url, "token endpoint", "./pyproject.toml")
        assert all(  # (at most the discovery request that was redirected there)
            (r["method"], r["path"]) == ("GET", "/.well-known/openid-configuration")
            for r in mirror.requests()
        )
        assert not any(CLIENT_SECRET in _decoded(r) for r in mirror.requests())
        assert all(
            k not in ("authorization", "cookie") for r in mirror.requests() for k, _ in r["raw_headers"]
        )
        assert not any(r["method"] == "POST" for r in attack_issuer.requests())


# ------------------------------------------------------- a project changes the issuer later
@pytest.mark.parametrize(
    ("day1", "change"),
    [("user-file", "issuer"), ("approved-project", "issuer"), ("approved-project", "token_url")],
)
def test_a_refresh_after_the_project_file_changed_the_issuer_sends_nothing_there(
    idp_factory, oauth_api_factory, recorder, tmp_path, new_shell, kr, monkeypatch, day1, change
):
    """Day 1: the profile ``work`` logs in at the provider (device flow; the refresh token
    lands in the keyring); it is the user's own (user config file), or the project's with
    its issuer approved. Day 2: the project file (a `git pull`) defines ``work`` with
    another issuer, or only another token endpoint, on the attacker's origin; the access
    token has expired. The new kernel's request sends the refresh token to nobody:
    ApprovalNeeded names the attacker's origin, the recorder there receives nothing, the
    provider receives no refresh either, and the stored token is kept."""
    idp = idp_factory(recorded=True, access_ttl=2)
    api = oauth_api_factory(idp)
    profile = (
        f'base_url = "{api.url}"\noauth = "device"\nissuer = "{idp.issuer}"\n'
        'client_id = "notebook"\nscope = "openid profile"\n'
    )
    if day1 == "user-file":
        user_file = tmp_path / "config" / "session-magics" / "config.toml"
        user_file.parent.mkdir(parents=True)
        user_file.write_text(f"[profiles.work]\n{profile}")
    else:
        (tmp_path / "pyproject.toml").write_text(f"[tool.session_magics.profiles.work]\n{profile}")
        _approve_in_user_file(tmp_path, idp.issuer)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    day1_shell = new_shell()
    run = in_cell_with_person(
        day1_shell, "%login --profile work", lambda link: Person("ada").approve_device(link), "/device"
    )
    assert run.error is None, run.all_text
    token = day1_shell.magics.session().token
    assert token is not None and token.refresh_token
    entry = kr.get_password(f"session-magics {api.url}", "ada")
    assert entry is not None and token.refresh_token in entry

    if change == "issuer":
        changed = profile.replace(f'issuer = "{idp.issuer}"', f'issuer = "{recorder.url}"')
    else:
        changed = profile + f'token_url = "{recorder.url}/token"\n'
    (tmp_path / "pyproject.toml").write_text(f"[tool.session_magics.profiles.work]\n{changed}")
    wait_until(lambda: token.is_expired(0), what="the access token to expire")
    posts_before = [r for r in idp.proxy.requests() if r["method"] == "POST"]
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "none")
    run = new_shell().run("%%api --profile work\nGET /me")
    assert_short_error(run, ApprovalNeeded, recorder.url, "./pyproject.toml")
    assert recorder.requests() == []
    assert [r for r in idp.proxy.requests() if r["method"] == "POST"] == posts_before
    assert not api.saw(token.refresh_token)
    assert kr.get_password(f"session-magics {api.url}", "ada") == entry  # kept: nothing was spent


# ----------------------------------------------------------- the loopback listener
def test_a_page_guessing_the_listeners_port_cannot_complete_the_login(idp, oauth_api):
    """Another page (or process) that finds the loopback port: answers without this login's
    state, or on another path, get a 400 and change nothing; the real answer still
    completes the login; afterwards the listener is gone. The browser only ever carries
    the PKCE challenge, never the verifier; the listener binds 127.0.0.1 only."""
    s = session_for(idp, oauth_api, "code")
    login = s.code_login().begin()
    assert login._server.server_address[0] == "127.0.0.1"
    login.start_in_thread()
    assert login._verifier not in login.authorize_url  # only its hash travels through the browser
    state = parse_qs(urlsplit(login.authorize_url).query)["state"][0]
    callback = login.redirect_uri.rsplit("/", 1)[0]
    for path, params in [
        ("/callback", {"code": "x", "state": "guess"}),
        ("/callback", {"code": "x"}),
        ("/elsewhere", {"code": "x", "state": state}),
        ("/callback", {"error": "access_denied", "state": "guess"}),
    ]:
        forged = requests.get(callback + path, params=params, timeout=10)
        assert forged.status_code == 400, (path, params)
    assert login.rejected == 4 and not login.done.is_set()
    redirected = Person("bob").sign_in(login.authorize_url, login.redirect_uri)
    assert requests.get(redirected, timeout=10).status_code == 200
    assert login.wait(30)
    login.outcome(30)
    assert s.token is not None and s.token.user == "bob"
    wait_until(lambda: _refused(redirected), what="the listener to close")
    assert not oauth_api.saw(login._verifier) and not oauth_api.saw(s.token.refresh_token)


def test_a_code_login_nobody_finishes_ends_at_login_timeout_with_its_listener_closed(
    idp, oauth_api, new_shell, kr, monkeypatch
):
    """Nobody signs in: the cell ends at SessionMagics.login_timeout, and the loopback
    listener is closed (a page finding its port later reaches nothing)."""
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    shell = new_shell()
    shell.run("%config SessionMagics.login_timeout = 1.5")
    seen: list[str] = []  # the link, read from the panel while it waits (it is gone afterwards)
    login = f"%login {oauth_api.url} --oauth code --issuer {idp.issuer} --client-id notebook"
    run = in_cell_with_person(shell, login, seen.append, "Sign in")
    assert isinstance(run.error, SessionExpired) and "No login within 1.5 s" in str(run.error)
    (link,) = seen
    redirect_uri = parse_qs(urlsplit(link).query)["redirect_uri"][0]
    wait_until(lambda: _refused(redirect_uri), what="the listener to close")


def test_a_cancelled_code_login_closes_its_listener(idp, oauth_api):
    """Cancel (the panel's button, Ctrl+C in a terminal): the listener closes, and the
    provider's answer arriving afterwards reaches nothing."""
    s = session_for(idp, oauth_api, "code")
    login = s.code_login().begin()
    login.start_in_thread()
    redirected = Person("bob").sign_in(login.authorize_url, login.redirect_uri)
    login.cancel()
    assert login.wait(30) and login.cancelled
    wait_until(lambda: _refused(redirected), what="the listener to close")
    assert s.token is None
    with pytest.raises(LoginCancelled, match="is not logged in"):
        login.outcome(30)


def _refused(url):
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False
