"""The transport's naming of failures: by the types along the cause chain, not by text."""

from __future__ import annotations

import socket

import pytest
import requests

from session_magics.transport import cause_chain, describe_failure
from tests.servers import free_port


def failure_of(url: str, **kwargs) -> BaseException:
    with pytest.raises(requests.RequestException) as caught:
        requests.get(url, timeout=5, **kwargs)
    return caught.value


def test_a_refused_connection_is_named_by_its_type():
    exc = failure_of(f"http://127.0.0.1:{free_port()}/")
    assert any(isinstance(e, ConnectionRefusedError) for e in cause_chain(exc))
    assert describe_failure(exc, 5).startswith("connection refused")


def test_a_name_that_does_not_resolve_is_named_by_its_type():
    exc = failure_of("http://no-such-host.invalid/")
    assert any(isinstance(e, socket.gaierror) for e in cause_chain(exc))
    assert "could not be resolved (DNS)" in describe_failure(exc, 5)


def test_words_in_a_message_do_not_decide_the_name():
    # A reset connection whose text happens to mention DNS and refusal words.
    exc = requests.exceptions.ConnectionError("Name or service not known; Connection refused")
    exc.__cause__ = ConnectionResetError(104, "reset by peer")
    assert describe_failure(exc, 5) == "the server closed the connection"


def test_an_unknown_failure_names_the_innermost_exception():
    exc = requests.exceptions.ConnectionError("wrapped")
    exc.__context__ = ValueError("something odd\nover two lines")
    assert describe_failure(exc, 5) == "connection failed (ValueError: something odd over two lines)"


def test_environment_settings_are_worked_out_once_per_origin(demo_api, monkeypatch):
    """requests reads the proxy variables (walking the whole environment) for every
    request; the transport does it once per origin, again only when they change."""
    import urllib.request

    import requests.sessions

    from session_magics.profile import Profile
    from session_magics.transport import Transport

    looked_up: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url, no_proxy=None):
        looked_up.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    monkeypatch.delenv("NO_PROXY", raising=False)
    transport = Transport(Profile("t", demo_api.url))
    # macOS and Windows also read the system's proxy settings: nothing is remembered there.
    env_only = urllib.request.getproxies is urllib.request.getproxies_environment
    try:
        for path in ("/", "/penguins", "/"):
            assert transport.send("GET", demo_api.url + path).status_code in (200, 401)
        assert len(looked_up) == (1 if env_only else 3)
        monkeypatch.setenv("NO_PROXY", "example.invalid")
        for _ in range(2):
            transport.send("GET", demo_api.url + "/")
        assert len(looked_up) == (2 if env_only else 5)
        assert transport.send("GET", demo_api.url.replace("127.0.0.1", "localhost") + "/").ok
        assert len(looked_up) == (3 if env_only else 6)  # another host:port, its own settings
    finally:
        transport.close()
