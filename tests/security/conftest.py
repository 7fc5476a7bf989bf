"""Fixtures of the security tests (see helpers.py for the servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from session_magics.demo import DemoServer
from tests.ipython_helpers import Shell
from tests.security.helpers import DEMO_PASSWORD, PASSWORD_ENV, OddAuthServer


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
    shells: list[Shell] = []
    monkeypatch.setenv(PASSWORD_ENV, DEMO_PASSWORD)

    def make() -> Shell:
        shell = Shell(str(tmp_path / f"ipython{len(shells)}"))
        shells.append(shell)
        return shell

    yield make
    for shell in shells:
        shell.close()


@pytest.fixture
def odd() -> Iterator[OddAuthServer]:
    with OddAuthServer() as server:
        yield server
