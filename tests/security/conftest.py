"""Fixtures of the security tests (see helpers.py for the servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from session_magics.demo import DemoServer
from tests.ipython_helpers import Shell, shell_factory
from tests.security.helpers import DEMO_PASSWORD, PASSWORD_ENV, OddAuthServer, login


@pytest.fixture
def api(forget_stored_tokens: Callable[[str], None]) -> Iterator[DemoServer]:
    """A demo API of this test's own (access tokens 300 s, refresh tokens 3600 s), with
    no token stored for its origin at the start."""
    with DemoServer(access_ttl=300, refresh_ttl=3600, password=DEMO_PASSWORD) as server:
        forget_stored_tokens(server.url)
        yield server


@pytest.fixture
def new_shell(tmp_path, monkeypatch) -> Iterator[Callable[[], Shell]]:
    """``new_shell()``: a fresh InteractiveShell (a kernel); the demo password is in $PASSWORD_ENV."""
    monkeypatch.setenv(PASSWORD_ENV, DEMO_PASSWORD)
    with shell_factory(tmp_path) as make:
        yield make


@pytest.fixture
def shell(api: DemoServer, kr: object, new_shell: Callable[[], Shell]) -> Shell:
    """A fresh shell logged in to ``api`` (with the in-memory keyring); ``api``'s
    statistics are reset after the login."""
    sh = new_shell()
    login(sh, api)
    api.reset_stats()
    return sh


@pytest.fixture
def odd() -> Iterator[OddAuthServer]:
    with OddAuthServer() as server:
        yield server
