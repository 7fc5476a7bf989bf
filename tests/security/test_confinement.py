"""Token confinement: the token goes to the profile's origin and nowhere else.

A second local server (the recorder) stands for "somewhere else": it records every
request it gets, and each test asserts on what it saw. The API is the demo API on
another port of 127.0.0.1.
"""

from __future__ import annotations

import base64

import pytest
import trustme

from session_magics import ProfileError, RequestFailed, RequestSyntaxError
from session_magics.demo import DemoServer
from tests.security.helpers import (
    PASSWORD_ENV,
    TOKEN_ENV,
    TLSDemoServer,
    assert_short_error,
    login,
    session_of,
    shown,
)

REDIRECTS = [301, 302, 303, 307, 308]
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "cookie"}


def hostport(url: str) -> str:
    return url.split("://", 1)[1]


def assert_no_credentials(recorder, *secrets: str) -> None:
    """Nothing the recorder received carried a credential header or any of ``secrets``."""
    for req in recorder.requests():
        names = {name for name, _ in req["raw_headers"]}
        assert not names & CREDENTIAL_HEADERS, req["raw_headers"]
    for secret in secrets:
        assert not recorder.saw(secret)


def token(sh, api) -> str:
    return session_of(sh, api.url).token.access_token


# ------------------------------------------------------------- other origins
@pytest.mark.parametrize(
    "target",
    ["{rec}/absolute", "http://localhost:{port}/absolute", "HTTP://127.0.0.1:{port}/absolute?x=1"],
    ids=["other-port-same-host", "localhost-name", "upper-case-scheme"],
)
def test_absolute_url_to_another_origin_gets_no_token(shell, api, recorder, target):
    port = hostport(recorder.url).rsplit(":", 1)[1]
    run = shell.run(f"%%api\nGET {target.format(rec=recorder.url, port=port)}")
    assert run.error is None, shown(run)
    assert run.result.status_code == 200
    assert [r["path"] for r in recorder.requests()] == ["/absolute"]
    assert_no_credentials(recorder, token(shell, api))


def test_another_port_of_the_api_host_is_another_origin(shell, api, recorder):
    """Same host (127.0.0.1), other port: a different origin, whatever the path says."""
    tok = token(shell, api)
    run = shell.run(f"%%api\nGET http://127.0.0.1:{recorder.url.rsplit(':', 1)[1]}/v1/me")
    assert run.error is None, shown(run)
    assert_no_credentials(recorder, tok)
    assert len(recorder.requests()) == 1


# ---------------------------------------------------------------- redirects
@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_redirect_to_another_origin_drops_the_token(shell, api, recorder, status, method):
    body = '\n\n{"a": 1}' if method == "POST" else ""
    run = shell.run(f"%%api\n{method} /redirect?to={recorder.url}/landed&status={status}{body}")
    assert run.error is None, shown(run)
    assert run.result.status_code == 200
    seen = recorder.requests()
    assert [r["path"] for r in seen] == ["/landed"]
    assert_no_credentials(recorder, token(shell, api))


@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("location", ["/me", "{api}/me"], ids=["relative", "absolute"])
def test_redirect_within_the_origin_keeps_the_token(shell, api, status, location):
    api.reset_stats()
    run = shell.run(f"%%api\nGET /redirect?to={location.format(api=api.url)}&status={status}")
    assert run.error is None, shown(run)
    assert run.result.status_code == 200, run.result.text
    assert run.result.data["username"] == "demo"
    assert api.stats()["unauthorized"] == 0


def test_redirect_back_to_the_api_does_not_reattach_the_token(shell, api, recorder):
    """api → recorder → api: once the token was dropped it is not put back. The 401
    at the end is shown, and it costs the session nothing (no refresh, no login)."""
    tok = token(shell, api)
    api.reset_stats()
    back = f"{recorder.url}/redirect?to={api.url}/me%26x=1&status=302"
    run = shell.run(f"%%api\nGET /redirect?to={back}&status=302")
    assert run.error is None, shown(run)
    assert run.result.status_code == 401
    assert_no_credentials(recorder, tok)
    stats = api.stats()
    assert stats["refresh_grants"] == 0 and stats["password_grants"] == 0
    assert token(shell, api) == tok
    assert shell.run("%%api\nGET /me").result.status_code == 200


def test_a_401_from_another_origin_costs_the_session_nothing(shell, api, kr):
    """A redirect to another API that answers 401 is that API's answer, not a sign that
    our token expired: no refresh, no forgetting, no login."""
    tok = token(shell, api)
    entry = kr.get_password(f"session-magics {api.url}", "demo")
    with DemoServer(password="other") as other:
        api.reset_stats()
        run = shell.run(f"%%api\nGET /redirect?to={other.url}/me&status=307")
        assert run.error is None, shown(run)
        assert run.result.status_code == 401
        assert other.stats()["unauthorized"] == 1
    stats = api.stats()
    assert stats["refresh_grants"] == 0 and stats["password_grants"] == 0, stats
    assert token(shell, api) == tok
    assert kr.get_password(f"session-magics {api.url}", "demo") == entry


def test_redirect_with_userinfo_in_the_location_sends_no_basic_auth(shell, api, recorder):
    target = f"http://mallory:st0len-basic@{hostport(recorder.url)}/landed"
    run = shell.run(f"%%api\nGET /redirect?to={target}&status=302")
    assert run.error is None, shown(run)
    assert [r["path"] for r in recorder.requests()] == ["/landed"]
    assert_no_credentials(recorder, token(shell, api), "st0len-basic")


# ------------------------------------------------------------------ https
@pytest.fixture
def tls_api(tmp_path, monkeypatch):
    ca = trustme.CA()
    with TLSDemoServer(ca, str(tmp_path), password="tls-Pa55word-99") as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_path)
        monkeypatch.setenv("TLS_PASSWORD", "tls-Pa55word-99")
        yield server


def test_https_api_works_and_a_downgrade_to_http_drops_the_token(tls_api, kr, new_shell, recorder):
    shell = new_shell()
    run = shell.run(f"%login {tls_api.url} --user demo --password-env TLS_PASSWORD")
    assert run.error is None, shown(run)
    tok = token(shell, tls_api)
    run = shell.run("%%api\nGET /redirect?to=/me&status=302")
    assert run.error is None and run.result.status_code == 200, shown(run)
    for status in REDIRECTS:
        run = shell.run(f"%%api\nGET /redirect?to={recorder.url}/plain&status={status}")
        assert run.error is None, shown(run)
    assert len(recorder.requests()) == len(REDIRECTS)
    # An absolute http:// URL to another port: plain text, so never the token.
    run = shell.run(f"%%api\nGET {recorder.url}/absolute")
    assert run.error is None, shown(run)
    assert_no_credentials(recorder, tok)


def test_https_profile_sends_nothing_over_http_to_its_own_host(kr, new_shell, recorder, monkeypatch):
    """A profile for https://127.0.0.1:PORT and a request to http://127.0.0.1:PORT (the
    recorder listens there, in plain text): same host and port, other scheme."""
    monkeypatch.setenv(TOKEN_ENV, "pasted-Token-31415926535")
    port = recorder.url.rsplit(":", 1)[1]
    shell = new_shell()
    run = shell.run(f"%login https://127.0.0.1:{port} --token-env {TOKEN_ENV}")
    assert run.error is None, shown(run)
    run = shell.run(f"%%api\nGET http://127.0.0.1:{port}/downgraded")
    assert run.error is None, shown(run)
    assert [r["path"] for r in recorder.requests()] == ["/downgraded"]
    assert_no_credentials(recorder, "pasted-Token-31415926535")


def test_untrusted_certificate_is_a_short_error_and_sends_no_password(tmp_path, kr, new_shell, monkeypatch):
    with TLSDemoServer(trustme.CA(), str(tmp_path), password="tls-Pa55word-99") as server:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.setenv("CURL_CA_BUNDLE", "")
        monkeypatch.setenv("TLS_PASSWORD", "tls-Pa55word-99")
        shell = new_shell()
        run = shell.run(f"%login {server.url} --user demo --password-env TLS_PASSWORD")
        assert_short_error(run, RequestFailed, "TLS", "certificate")
        assert server.state.stats()["password_grants"] == 0


# -------------------------------------------------------------- plain http
@pytest.mark.parametrize("host", ["api.example.invalid", "10.1.2.3", "0.0.0.0", "127.0.0.1.example.invalid"])
def test_plain_http_to_another_host_is_refused_without_allow_http(kr, new_shell, host):
    shell = new_shell()
    run = shell.run(f"%login http://{host}:8080 --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, ProfileError, "--allow-http")
    assert not shell.magics.sessions


def test_allow_http_is_an_explicit_choice(kr, new_shell, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "pasted-Token-27182818")
    shell = new_shell()
    run = shell.run(f"%login http://api.example.invalid --allow-http --token-env {TOKEN_ENV}")
    assert run.error is None, shown(run)
    session = session_of(shell, "http://api.example.invalid")
    assert session.profile.allow_http
    assert session.profile.owns("http://api.example.invalid/x")
    assert not session.profile.owns("http://other.example.invalid/x")


# ---------------------------------------------------------------- userinfo
USERINFO_REFUSED = [
    "http://u:pw-in-url@{rec}/x",
    "http://{api}@{rec}/x",
    "http://{rec}\\@{api}/x",
    "http://{rec}%5C@{api}/x",
    "http://demo:pw-in-url@{api}/me",
    "http://{api}:@{rec}/x",
]
USERINFO_ELSEWHERE = [
    "http://{rec}#@{api}/x",
    "http://{rec}?@{api}/x",
    "http://{rec}/@{api}/x",
    "http://{rec}/x?next=http://{api}/me",
]


@pytest.mark.parametrize("template", USERINFO_REFUSED)
def test_userinfo_in_a_request_url_is_refused(shell, api, recorder, template):
    """Credentials in a URL would be kept in the notebook and its history, and '@'
    tricks make the host ambiguous: such URLs are refused before anything is sent."""
    api.reset_stats()
    url = template.format(api=hostport(api.url), rec=hostport(recorder.url))
    run = shell.run(f"%%api\nGET {url}")
    assert_short_error(run, RequestFailed, "user name or password")
    assert "pw-in-url" not in shown(run)
    assert recorder.requests() == []
    assert api.stats()["requests_by_path"] == {}


@pytest.mark.parametrize("template", USERINFO_ELSEWHERE)
def test_at_sign_outside_the_host_part_goes_where_the_host_says(shell, api, recorder, template):
    url = template.format(api=hostport(api.url), rec=hostport(recorder.url))
    run = shell.run(f"%%api\nGET {url}")
    assert run.error is None, shown(run)
    assert len(recorder.requests()) == 1
    assert_no_credentials(recorder, token(shell, api))


# ----------------------------------------------------------- {{...}} URLs
def test_url_built_with_interpolation(shell, api, recorder):
    shell.run(f"target = {recorder.url + '/built'!r}")
    run = shell.run("%%api\nGET {{target}}?page={{1 + 1}}")
    assert run.error is None, shown(run)
    assert [(r["path"], r["query"]) for r in recorder.requests()] == [("/built", "page=2")]
    assert_no_credentials(recorder, token(shell, api))


@pytest.mark.parametrize(
    "value",
    ["{rec}\n@{api}", "{rec}\t@{api}", "{rec} @{api}", "{rec}\r\nX-Evil: 1", "{rec}\x00@{api}"],
    ids=["newline", "tab", "space", "crlf-header", "nul"],
)
def test_interpolated_url_with_whitespace_or_control_characters_is_refused(
    shell, api, recorder, value
):
    api.reset_stats()
    shell.run(f"target = {value.format(api=hostport(api.url), rec='http://' + hostport(recorder.url))!r}")
    run = shell.run("%%api\nGET {{target}}/x")
    assert_short_error(run, RequestSyntaxError, "line 1")
    assert recorder.requests() == []
    assert api.stats()["requests_by_path"] == {}


# ---------------------------------------------------------- custom header
def test_custom_token_header_is_dropped_on_redirect_to_another_origin(api, kr, new_shell, recorder):
    shell = new_shell()
    run = shell.run(
        f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --login /auth/apikey "
        "--body json --header X-API-Key --scheme none"
    )
    assert run.error is None, shown(run)
    key = token(shell, api)
    run = shell.run("%%api\nGET /me")
    assert run.result.status_code == 200 and run.result.data["token_kind"] == "apikey"
    for status in REDIRECTS:
        run = shell.run(f"%%api\nGET /redirect?to=/me&status={status}")
        assert run.result.status_code == 200, (status, run.result.text)
        run = shell.run(f"%%api\nGET /redirect?to={recorder.url}/landed&status={status}")
        assert run.error is None, shown(run)
    assert len(recorder.requests()) == len(REDIRECTS)
    assert_no_credentials(recorder, key)


# -------------------------------------------------------------------- .netrc
@pytest.fixture
def netrc(tmp_path, monkeypatch):
    path = tmp_path / "netrc"
    path.write_text(
        "machine 127.0.0.1 login netrc-user password netrc-Secret-1\n"
        "machine localhost login netrc-user password netrc-Secret-1\n"
        "default login netrc-default password netrc-Secret-2\n"
    )
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    basic = [
        base64.b64encode(b"netrc-user:netrc-Secret-1").decode(),
        base64.b64encode(b"netrc-default:netrc-Secret-2").decode(),
    ]
    return ["netrc-Secret-1", "netrc-Secret-2", *basic]


def test_netrc_adds_nothing_anywhere(netrc, api, kr, new_shell, recorder, monkeypatch):
    import requests

    # The file is read by requests (so the test can fail): a bare requests call uses it.
    requests.get(f"{recorder.url}/control", timeout=5)
    assert recorder.requests()[0]["headers"]["authorization"].startswith("Basic ")
    recorder.clear()

    shell = new_shell()
    run = shell.run(f"%%api\nGET {recorder.url}/before-login")  # no profile at all yet
    assert run.error is None, shown(run)
    run = shell.run(f"%login {recorder.url} --user someone --password-env {PASSWORD_ENV}")
    assert run.error is not None  # the recorder gives no token
    login(shell, api)
    tok = token(shell, api)
    run = shell.run("%%api\nGET /me")  # netrc must not replace the Bearer token
    assert run.result.status_code == 200, run.result.text
    for cell in (
        f"GET {recorder.url}/absolute",
        f"GET /redirect?to={recorder.url}/redirected&status=302",
        f"GET /redirect?to={recorder.url}/redirected307&status=307",
    ):
        assert shell.run(f"%%api\n{cell}").error is None
    run = shell.run(f"%%api --no-auth\nGET {recorder.url}/no-auth")
    assert run.error is None
    paths = [r["path"] for r in recorder.requests()]
    assert paths == ["/before-login", "/auth/token", "/absolute", "/redirected", "/redirected307", "/no-auth"]
    # The login post carries the password, as it must, but no Basic header from netrc.
    assert_no_credentials(recorder, tok, *netrc)

    monkeypatch.setenv(TOKEN_ENV, "pasted-Token-16180339")
    run = shell.run(f"%login {recorder.url} --profile rec --token-env {TOKEN_ENV}")
    assert run.error is None, shown(run)
    recorder.clear()
    assert shell.run("%%api --profile rec\nGET /mine").error is None
    sent = [r["headers"].get("authorization") for r in recorder.requests()]
    assert sent == ["Bearer pasted-Token-16180339"]
    for secret in netrc:
        assert not recorder.saw(secret)
