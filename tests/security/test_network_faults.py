"""Server and network faults: each is one short line (what failed, what to do), or a
bounded display; retries only where they are safe."""

from __future__ import annotations

import json
import time

import pytest

from session_magics import RequestFailed, SessionMagicsError
from session_magics.demo import data
from session_magics.transport import RETRY_AFTER_MAX
from tests.security.helpers import PASSWORD_ENV, assert_short_error, run_measuring_peak, shown
from tests.servers import free_port, silent


def text_of(run) -> str:
    """Everything displayed for a result (all mime types), as one string."""
    return shown(run) + json.dumps(run.displayed, default=str)


def count(api, path: str) -> int:
    return api.stats()["requests_by_path"].get(path, 0)


# ------------------------------------------------------------------- no answer
def test_connection_refused(shell):
    port = free_port()
    run = shell.run(f"%%api\nGET http://127.0.0.1:{port}/x")
    assert_short_error(run, RequestFailed, f"127.0.0.1:{port}", "connection refused", "server running")


def test_connection_refused_at_login(kr, new_shell):
    port = free_port()
    shell = new_shell()
    run = shell.run(f"%login http://127.0.0.1:{port} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, RequestFailed, "POST", "connection refused")


def test_name_that_does_not_resolve(shell):
    run = shell.run("%%api\nGET http://no-such-host.invalid/x")
    assert_short_error(run, RequestFailed, "no-such-host.invalid", "could not be resolved", "DNS")


def assert_given_up(server) -> None:
    """The client hung up on a server that never answered: it did not wait for an answer
    (a client that did would get one, from ``silent``, and leave no ``client_left``)."""
    assert server.finished.wait(120), "the server's handler never ended"
    assert server.client_left.is_set() and server.sent == 0


def test_timeout(shell, raw_server):
    server = raw_server(silent())
    run = shell.run(f"%%api --timeout 0.5\nGET {server.url}/x")
    assert_short_error(run, RequestFailed, "no complete answer within 0.5 s", "--timeout")
    assert_given_up(server)
    assert len(server.requests) == 1  # a read timeout is not retried


# ---------------------------------------------------------------- error statuses
@pytest.mark.parametrize("code", [500, 502, 504])
def test_server_errors_are_shown_not_raised_and_not_retried(shell, api, code):
    run = shell.run(f"%%api\nGET /status/{code}")
    assert run.error is None, shown(run)
    assert run.result.status_code == code
    assert "failed to handle the request" in text_of(run)
    assert count(api, f"/status/{code}") == 1


@pytest.mark.parametrize("code", [429, 503])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_retry_after_is_honoured_for_idempotent_methods(shell, api, code, method):
    started = time.monotonic()
    run = shell.run(f"%%api\n{method} /status/{code}?retry_after=1")
    elapsed = time.monotonic() - started
    assert run.error is None, shown(run)
    assert run.result.status_code == code
    assert count(api, f"/status/{code}") == 3  # the request and two retries
    assert elapsed >= 2.0  # Retry-After: 1, twice
    assert "sent 3 times" in text_of(run) and "Retry-After: 1" in text_of(run)


@pytest.mark.parametrize("code", [429, 503])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_are_never_retried(shell, api, code, method):
    run = shell.run(f'%%api\n{method} /status/{code}?retry_after=1\n\n{{"a": 1}}')
    assert run.error is None, shown(run)
    assert run.result.status_code == code
    assert count(api, f"/status/{code}") == 1


def test_a_long_retry_after_is_not_waited_for(shell, api):
    # Just over the longest wait honoured, and well within the request's 30 s: a client that
    # waited would send the request three times (as for Retry-After: 1 above).
    seconds = int(RETRY_AFTER_MAX) + 1
    run = shell.run(f"%%api\nGET /status/429?retry_after={seconds}")
    assert run.error is None, shown(run)
    assert run.result.status_code == 429
    assert count(api, "/status/429") == 1
    assert f"Retry-After: {seconds}" in text_of(run)


# ------------------------------------------------------------------ odd bodies
def test_malformed_json(shell):
    run = shell.run("%%api -o r\nGET /malformed")
    assert run.error is None, shown(run)
    result = shell.ip.user_ns["r"]
    assert isinstance(result.data, str)
    assert "not valid JSON" in text_of(run)


def test_wrong_content_type_is_shown_as_text_never_rendered(shell):
    run = shell.run("%%api -o r\nGET /html\nAccept: application/json")
    assert run.error is None, shown(run)
    html_out = "".join(str(d.get("text/html", "")) for d in run.displayed)
    assert "&lt;h1&gt;Penguins" in html_out and "<h1>" not in html_out
    with pytest.raises(ValueError, match="no list of records"):
        shell.ip.user_ns["r"].df


def test_markup_in_json_values_is_escaped_in_the_table(shell):
    payload = '[{"name": "<img src=x onerror=alert(1)>", "n": 1}, {"name": "<script>x()</script>", "n": 2}]'
    run = shell.run(f"%%api\nPOST /echo\n\n{payload}")
    assert run.error is None, shown(run)
    html_out = "".join(str(d.get("text/html", "")) for d in run.displayed)
    assert "&lt;img" in html_out and "<img" not in html_out and "<script" not in html_out


def test_huge_body_has_a_bounded_display(shell):
    run = shell.run("%%api -o r\nGET /big?mb=20")
    assert run.error is None, shown(run)
    assert len(shell.ip.user_ns["r"].content) > 19_000_000
    bundle = shell.ip.display_formatter.format(run.result)[0]
    assert len(json.dumps(bundle, default=str)) < 200_000
    assert len(json.dumps(run.displayed, default=str)) < 200_000


def test_binary_body(shell):
    for _ in range(20):  # 1 KB of random bytes: some samples hold no NUL byte at all
        run = shell.run("%%api -o r\nGET /binary?kb=1")
        result = shell.ip.user_ns["r"]
        assert isinstance(result.data, bytes) and len(result.data) == 1024
        assert "binary data" in text_of(run)


# ---------------------------------------------------------------------- --save
def test_save_streams_the_body_to_a_file(kr, new_shell, demo_subprocess, tmp_path, monkeypatch):
    """30 MB from a demo API in another process (so its memory is not counted): the
    client's peak allocation stays far below the body's size, and the file is exact."""
    monkeypatch.setenv("DEMO_SUBPROCESS_PASSWORD", "sub-Pa55word-1")
    demo = demo_subprocess("--password", "sub-Pa55word-1", "--log-level", "warning")
    shell = new_shell()
    run = shell.run(f"%login {demo.url} --user demo --password-env DEMO_SUBPROCESS_PASSWORD")
    assert run.error is None, shown(run)
    target = tmp_path / "big.json"
    run, peak = run_measuring_peak(shell, f"%%api -o r --save {target}\nGET /big?mb=30")
    assert run.error is None, shown(run)
    assert peak < 8_000_000, peak
    result = shell.ip.user_ns["r"]
    size = target.stat().st_size
    assert size == int(result.headers["Content-Length"]) > 29_000_000
    assert result.saved_to == str(target) and result.saved_bytes == size
    assert f"Saved {size / 1024 / 1024:.1f} MB to {target}" in run.stdout
    assert str(target) in text_of(run)
    with pytest.raises(ValueError, match="saved to"):
        result.content  # the body is not in memory
    assert not (tmp_path / "big.json.part").exists()
    assert target.read_bytes() == data.big_json(30)


def test_save_of_an_error_answer_writes_nothing(shell, tmp_path):
    target = tmp_path / "missing.json"
    run = shell.run(f"%%api --save {target}\nGET /status/404")
    assert run.error is None, shown(run)
    assert "Nothing saved" in run.stderr and not target.exists()


def test_save_of_a_binary_body(shell, tmp_path):
    target = tmp_path / "blob.bin"
    run = shell.run(f"%%api --save {target}\nGET /binary?kb=256")
    assert run.error is None, shown(run)
    assert target.stat().st_size == 256 * 1024


def test_save_into_a_missing_directory_is_one_line(shell, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "x.json"
    run = shell.run(f"%%api --save {target}\nGET /small")
    assert_short_error(run, SessionMagicsError, "--save", "No such file or directory")


# ----------------------------------------------------------------------- login
def test_login_that_times_out(kr, new_shell, raw_server):
    server = raw_server(silent())
    shell = new_shell()
    shell.run("%config SessionMagics.timeout = 0.5")
    run = shell.run(f"%login {server.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, RequestFailed, "POST", "no complete answer within 0.5 s")
    assert_given_up(server)
    assert len(server.requests) == 1
