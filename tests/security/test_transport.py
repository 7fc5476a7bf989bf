"""The transport's promises: a request is bounded in time and in memory, credentials are
not redirected away, the framing of a request is ours, a local API is reached directly,
and odd input is a one-line answer.

The misbehaving servers (a trickle, an endless body, a recording proxy) are raw TCP
servers in tests/servers.py; none of these tests measures a duration: each asserts what
the request did (its error, what the server still had to send, what reached whom).
"""

from __future__ import annotations

import time

import pytest
from traitlets import TraitError

from session_magics import RequestFailed, RequestSyntaxError, SessionMagicsError
from session_magics.request import parse_request
from tests.security.helpers import (
    DEMO_PASSWORD,
    PASSWORD_ENV,
    TLSDemoServer,
    assert_short_error,
    login,
    run_measuring_peak,
    shown,
)
from tests.servers import endless_body, trickle

TRICKLE_BYTES = 150  # one byte every 0.2 s: 30 s to send them all


def count(api, path: str) -> int:
    return api.stats()["requests_by_path"].get(path, 0)


def assert_cut_short(server) -> None:
    """The server was still sending when the client hung up."""
    assert server.finished.wait(30), "the server is still sending"
    assert server.client_left.is_set()
    assert server.sent < TRICKLE_BYTES + 100, server.sent


# ------------------------------------------------------------- the total deadline
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_trickling_body_ends_at_the_deadline(shell, raw_server, framing):
    server = raw_server(trickle("body", count=TRICKLE_BYTES, framing=framing))
    run = shell.run(f"%%api -o r --timeout 1\nGET {server.url}/trickle")
    assert_short_error(run, RequestFailed, "no complete answer within 1 s", "--timeout")
    assert "r" not in shell.ip.user_ns  # no truncated body passed off as the answer
    assert_cut_short(server)


def test_slowly_sent_headers_end_at_the_deadline(shell, raw_server):
    server = raw_server(trickle("headers", count=TRICKLE_BYTES))
    run = shell.run(f"%%api --timeout 1\nGET {server.url}/slow-headers")
    assert_short_error(run, RequestFailed, "no complete answer within 1 s", "--timeout")
    assert_cut_short(server)


def test_save_is_bounded_by_the_deadline_too(shell, raw_server, tmp_path):
    server = raw_server(trickle("body", count=TRICKLE_BYTES))
    target = tmp_path / "slow.txt"
    run = shell.run(f"%%api --timeout 1 --save {target}\nGET {server.url}/trickle")
    assert_short_error(run, RequestFailed, "no complete answer within 1 s", f"nothing was saved to {target}")
    assert not target.exists() and not (tmp_path / "slow.txt.part").exists()
    assert_cut_short(server)


def test_retries_stop_when_the_deadline_leaves_no_time_for_them(shell, api):
    # Retry-After: 1 twice would need 2 s of waiting: more than the 1.5 s the request has.
    run = shell.run("%%api --timeout 1.5\nGET /status/503?retry_after=1")
    assert run.error is None, shown(run)
    assert run.result.status_code == 503
    assert count(api, "/status/503") < 3


def test_a_login_is_bounded_by_the_deadline(kr, new_shell, raw_server):
    server = raw_server(trickle("body", count=TRICKLE_BYTES))
    shell = new_shell()
    shell.run("%config SessionMagics.timeout = 1")
    run = shell.run(f"%login {server.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, RequestFailed, "no complete answer within 1 s")
    assert DEMO_PASSWORD not in shown(run)
    assert_cut_short(server)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(shell, api, value):
    run = shell.run(f"%%api --timeout {value}\nGET /small")
    assert_short_error(run, SessionMagicsError, "--timeout must be a positive number of seconds")
    assert count(api, "/small") == 0


def test_a_configured_timeout_of_zero_is_refused(shell):
    shell.run("%config SessionMagics.timeout = 0")
    assert shell.magics.timeout == 30.0  # %config reports the error and keeps the old value
    with pytest.raises(TraitError, match="positive number of seconds"):
        shell.magics.timeout = -1


# ---------------------------------------------------------------- bounded bodies
def test_the_default_body_limit_is_100_mb(shell):
    assert shell.magics.max_body == 100 * 1024 * 1024


def test_an_endless_body_stops_at_the_limit_and_memory_stays_bounded(shell, raw_server):
    server = raw_server(endless_body(limit=150 * 1024 * 1024))
    run, peak = run_measuring_peak(shell, f"%%api -o r --max-body 2MB\nGET {server.url}/endless")
    assert_short_error(run, RequestFailed, "larger than 2.0 MB", "--save", "--max-body")
    assert peak < 16 * 1024 * 1024, peak
    assert server.finished.wait(30) and server.client_left.is_set()
    assert server.sent < 150 * 1024 * 1024  # the client hung up long before the end


def test_the_configured_limit_applies(shell, raw_server):
    server = raw_server(endless_body(limit=150 * 1024 * 1024))
    shell.run("%config SessionMagics.max_body = 1048576")
    run = shell.run(f"%%api\nGET {server.url}/endless")
    assert_short_error(run, RequestFailed, "larger than 1.0 MB")
    assert server.finished.wait(30) and server.client_left.is_set()


def test_an_announced_huge_body_is_refused_before_reading(shell, raw_server):
    server = raw_server(endless_body(limit=150 * 1024 * 1024, announce=10 * 1024**3))
    run = shell.run(f"%%api --max-body 1MB\nGET {server.url}/huge")
    assert_short_error(run, RequestFailed, "larger than 1.0 MB", "announces 10.0 GB")
    assert server.finished.wait(30) and server.sent < 150 * 1024 * 1024


def test_the_limit_counts_bodies_not_what_a_head_request_announces(shell, api):
    run = shell.run("%%api -o r --max-body 1MB\nHEAD /big?mb=20")
    assert run.error is None, shown(run)
    assert int(shell.ip.user_ns["r"].headers["Content-Length"]) > 19_000_000


def test_save_has_no_body_limit(shell, raw_server, tmp_path):
    server = raw_server(endless_body(limit=3 * 1024 * 1024))
    target = tmp_path / "all.txt"
    run = shell.run(f"%%api --max-body 1MB --save {target}\nGET {server.url}/endless")
    assert run.error is None, shown(run)
    assert target.stat().st_size == server.sent - len(server_head(server))


def server_head(server) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("value", ["lots", "0", "-5MB", "1TB"])
def test_a_bad_max_body_is_one_line(shell, value):
    run = shell.run(f"%%api --max-body={value}\nGET /small")
    assert_short_error(run, SessionMagicsError, "--max-body takes a size")


# ------------------------------------------------------ credentials stay at home
@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_login_redirected_to_another_origin_is_not_followed(kr, new_shell, api, recorder, status):
    shell = new_shell()
    target = f"/redirect?to={recorder.url}/collect&status={status}"
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --login {target}")
    assert_short_error(run, RequestFailed, "redirected the credentials", recorder.url, "not followed")
    assert recorder.requests() == []


def test_a_login_redirected_within_its_origin_works(kr, new_shell, api):
    shell = new_shell()
    target = "/redirect?to=/auth/token&status=307"
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --login {target}")
    assert run.error is None, shown(run)
    assert "Logged in as demo" in run.stdout


def test_revocation_redirected_elsewhere_sends_no_token_there(kr, new_shell, api, recorder):
    shell = new_shell()
    revoke = f"/redirect?to={recorder.url}/collect&status=307"
    login(shell, api, f"--revoke {revoke}")
    session = shell.magics.sessions[api.url]
    token = session.token
    run = shell.run("%logout")
    assert run.error is None, shown(run)
    assert "redirected the credentials" in run.stderr
    assert recorder.requests() == []
    assert not any(t and t in shown(run) for t in (token.access_token, token.refresh_token))


@pytest.fixture
def tls_api(tmp_path, monkeypatch):
    import trustme

    with TLSDemoServer(trustme.CA(), str(tmp_path), password="tls-Pa55word-99") as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_path)
        monkeypatch.setenv("TLS_PASSWORD", "tls-Pa55word-99")
        yield server


def test_a_login_is_never_downgraded_to_http(tls_api, kr, new_shell):
    shell = new_shell()
    port = tls_api.url.rsplit(":", 1)[1]
    target = f"/redirect?to=http://127.0.0.1:{port}/auth/token&status=307"
    run = shell.run(f"%login {tls_api.url} --user demo --password-env TLS_PASSWORD --login {target}")
    assert_short_error(run, RequestFailed, "redirected the credentials", f"http://127.0.0.1:{port}")


# -------------------------------------------------------------------- the wire
@pytest.mark.parametrize(
    "header",
    ["Host: evil.example", "Content-Length: 3", "Transfer-Encoding: chunked", "content-length: 100"],
)
def test_framing_and_host_headers_are_refused(shell, api, header):
    run = shell.run(f'%%api\nPOST /echo\n{header}\nContent-Type: application/json\n\n{{"a": 1}}')
    name = header.split(":")[0]
    assert_short_error(run, RequestFailed, f"a {name} header cannot be written by hand")
    assert count(api, "/echo") == 0


@pytest.fixture
def proxied(monkeypatch, recording_proxy):
    """Every proxy variable of the environment points at the recording proxy."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, recording_proxy.url)
    return recording_proxy


def test_an_api_on_this_machine_is_reached_directly_not_through_a_proxy(proxied, api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    run = shell.run("%%api\nGET /me")
    assert run.error is None and run.result.status_code == 200, shown(run)
    assert proxied.requests == []
    assert not proxied.saw(DEMO_PASSWORD)


def test_a_proxy_for_other_hosts_keeps_working(proxied, shell):
    run = shell.run("%%api -o r\nGET http://api.example.invalid/things?x=1")
    assert run.error is None, shown(run)
    assert shell.ip.user_ns["r"].data == {"proxied": True}
    assert proxied.requests[0].startswith(b"GET http://api.example.invalid/things?x=1 HTTP/1.1\r\n")


def test_proxy_variables_changed_between_cells_are_honoured(proxied, shell, monkeypatch):
    """The proxy settings are worked out once per origin and reused, but a change of the
    variables between cells is seen by the next request: NO_PROXY, then another proxy."""
    from tests.servers import RecordingProxy

    cell = "%%api -o r\nGET http://api.example.invalid/things"
    for _ in range(2):
        run = shell.run(cell)
        assert run.error is None, shown(run)
    assert len(proxied.requests) == 2
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "api.example.invalid")
    run = shell.run(cell)  # directly now: the .invalid name does not resolve
    assert_short_error(run, RequestFailed, "could not be resolved")
    assert len(proxied.requests) == 2
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name)
    run = shell.run(cell)
    assert run.error is None, shown(run)
    assert len(proxied.requests) == 3
    with RecordingProxy() as other:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, other.url)
        run = shell.run(cell)
        assert run.error is None, shown(run)
        assert len(other.requests) == 1 and len(proxied.requests) == 3
        assert other.requests[0].startswith(b"GET http://api.example.invalid/things HTTP/1.1\r\n")


def test_https_to_other_hosts_goes_through_the_proxy_with_connect(proxied, shell):
    # The recording proxy answers CONNECT with a plain HTTP body, so TLS fails after it.
    run = shell.run("%%api\nGET https://api.example.invalid/things")
    assert_short_error(run, RequestFailed, "https://api.example.invalid/things")
    assert proxied.requests[0].startswith(b"CONNECT api.example.invalid:443 HTTP/1.")


def test_an_idn_base_url_gets_its_token(proxied, kr, new_shell, monkeypatch):
    monkeypatch.setenv("IDN_TOKEN", "idn-token-0123456789")
    shell = new_shell()
    run = shell.run("%login http://bücher.example --allow-http --token-env IDN_TOKEN")
    assert run.error is None, shown(run)
    run = shell.run("%%api\nGET /books")
    assert run.error is None, shown(run)
    sent = proxied.requests[0]
    assert sent.startswith(b"GET http://xn--bcher-kva.example/books HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer idn-token-0123456789\r\n" in sent


# -------------------------------------------------------------- odd input
def test_a_lone_surrogate_in_a_body_is_one_line(shell, api):
    run = shell.run('%%api\nPOST /echo\n\n{{"\\ud800"}}')
    assert_short_error(run, RequestSyntaxError, "surrogate")
    assert count(api, "/echo") == 0


def test_a_deeply_nested_json_request_body_is_sent(shell, api):
    depth = 10_000
    run = shell.run("%%api -o r\nPOST /echo\n\n" + "[" * depth + "]" * depth)
    assert run.error is None, shown(run)
    assert count(api, "/echo") == 1
    assert run.result.response.request.headers["Content-Type"] == "application/json"


def test_a_deeply_nested_json_answer_is_shown_as_text(shell, raw_server):
    depth = 10_000
    body = b"[" * depth + b"]" * depth

    def deep(conn, server):
        server.send(
            conn,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )

    server = raw_server(deep)
    run = shell.run(f"%%api -o r\nGET {server.url}/deep")
    assert run.error is None, shown(run)
    result = shell.ip.user_ns["r"]
    assert isinstance(result.data, str) and result.json_error == "nested too deeply"


def _cpu_seconds(n: int) -> float:
    text = "POST /x\n\n" + "{{x}}," * n
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        spec = parse_request(text, lambda expr: 7)
        best = min(best, time.process_time() - started)
    assert spec.body is not None and spec.body.count("7") == n
    return best


def test_many_placeholders_cost_linear_time():
    """200 000 placeholders: the work grows with their number, not with its square (the
    ratio of two sizes, not a duration, is asserted: 4× the placeholders, about 4× the work;
    a quadratic parser needs about 16×)."""
    small, large = _cpu_seconds(50_000), _cpu_seconds(200_000)
    assert large / small < 8, (small, large)
