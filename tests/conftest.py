"""Shared fixtures and markers.

Fixtures here: ``memory_keyring``, ``hanging_keyring``, ``secret_service_keyring``
(plus those of ``tests/servers.py``). Markers added automatically: tests under
``tests/e2e`` get ``browser`` and ``slow``; tests using ``secret_service_keyring``
get ``secretservice`` and ``slow``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.core
import pytest

from tests.keyrings import HangingKeyring, MemoryKeyring

# Tests decide which keyring they use; an inherited choice would hide the real one.
os.environ.pop("PYTHON_KEYRING_BACKEND", None)

try:
    from tests.servers import *  # noqa: F403  (fixtures: demo_api, demo_api_factory, ...)
except ModuleNotFoundError as exc:  # only "not written yet"; any other error is real
    if exc.name != "tests.servers":
        raise
from tests.idp.servers import *  # noqa: F403,E402  (fixtures: idp, idp_factory, oauth_api, ...)

TESTS_DIR = Path(__file__).resolve().parent
E2E_DIR = TESTS_DIR / "e2e"

SECRET_SERVICE_HOW = (
    "run the suite with `make test`, or wrap pytest in scripts/with-secret-service.sh "
    "(a private D-Bus session with an unlocked, throwaway gnome-keyring)"
)


@pytest.hookimpl(tryfirst=True)  # before -m selection, so the markers count there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
        if "secret_service_keyring" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.secretservice)
            item.add_marker(pytest.mark.slow)


ALLOW_SKIP = "SESSION_MAGICS_ALLOW_SKIP"


def cannot_run(message: str) -> None:
    """A test that needs what this machine lacks fails loudly, saying what is missing.

    Only with ``SESSION_MAGICS_ALLOW_SKIP=1`` does it become a skip instead; pytest's
    ``-ra`` summary then lists every test that did not run and why. ``make test-fast``
    deselects the slow tests (``-m "not slow"``) rather than skipping them.
    """
    if os.environ.get(ALLOW_SKIP) == "1":
        pytest.skip(f"DID NOT RUN: {message}")
    how = f"set {ALLOW_SKIP}=1 to skip such tests; make test-fast runs the unit tests only"
    pytest.fail(f"{message} ({how})", pytrace=False)


@contextlib.contextmanager
def keyring_restored() -> Iterator[None]:
    """Puts back the keyring backend that was set on entry."""
    saved = keyring.core._keyring_backend
    try:
        yield
    finally:
        keyring.core._keyring_backend = saved


@pytest.fixture(autouse=True)
def _restore_default_keyring() -> Iterator[None]:
    """No test leaves ``keyring.set_keyring(...)`` behind for the next one."""
    with keyring_restored():
        yield


@pytest.fixture(autouse=True)
def _forget_kept_secrets() -> Iterator[None]:
    """Secrets that --password-env / --token-env took from the environment are kept for
    the process's life (the kernel's): each test starts and ends without them."""
    from session_magics.redact import forget_kept

    forget_kept()
    yield
    forget_kept()


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def kr() -> MemoryKeyring:
    """A MemoryKeyring installed as the default keyring (restored after the test)."""
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@pytest.fixture
def forget_stored_tokens(_secret_service_status: str | None) -> Callable[[str], None]:
    """``forget_stored_tokens(url)``: the private Secret Service (when in use) drops what
    it holds for ``url``'s origin. A new demo API's port may be one an earlier test's
    server had, and a token left under it would not be "a fresh keyring"."""

    def forget(url: str) -> None:
        if _secret_service_status is None:
            forget_session_magics_entries(url)

    return forget


@pytest.fixture
def api(forget_stored_tokens: Callable[[str], None]) -> Iterator[Any]:
    """A demo API of this test's own (access tokens 300 s, refresh tokens 3600 s), with
    no token stored for its origin at the start."""
    from session_magics.demo import DemoServer

    with DemoServer(access_ttl=300, refresh_ttl=3600) as server:
        forget_stored_tokens(server.url)
        yield server


@pytest.fixture
def hanging_keyring() -> Iterator[HangingKeyring]:
    """A keyring whose calls block until ``release()``; released at teardown."""
    ring = HangingKeyring()
    try:
        yield ring
    finally:
        ring.release()


def _secret_service_problem() -> str | None:
    """None if a usable Secret Service is there, else why not."""
    if os.environ.get("SESSION_MAGICS_SECRET_SERVICE") != "1":
        # Without the wrapper a Secret Service may still answer: the user's own
        # desktop keyring. Tests must never write there.
        return "not running inside scripts/with-secret-service.sh"
    try:
        from keyring.backends import SecretService

        SecretService.Keyring.priority  # noqa: B018  (raises when unusable)
        ring = SecretService.Keyring()
        service, user = f"session-magics-probe-{uuid.uuid4().hex}", "probe"
        ring.set_password(service, user, "probe-value")
        got = ring.get_password(service, user)
        ring.delete_password(service, user)
    except Exception as exc:  # any failure means: not usable
        return f"{type(exc).__name__}: {exc}"
    if got != "probe-value":
        return f"round trip returned {got!r} instead of the stored value"
    return None


@pytest.fixture(scope="session")
def _secret_service_status() -> str | None:
    return _secret_service_problem()


def forget_session_magics_entries(base_url: str | None = None) -> None:
    """Delete session-magics token entries from the private Secret Service: all of
    them, or those of ``base_url``'s origin.

    Demo APIs listen on free ports, and ports get reused: a test must not meet
    a token that an earlier test (or a kernel it started) stored under the same
    origin. Holds the store's lock, as kernels still running would."""
    from contextlib import closing

    import secretstorage
    from filelock import FileLock

    from session_magics.store import default_lock_path

    lock_path = default_lock_path()
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with FileLock(lock_path, timeout=30), closing(secretstorage.dbus_init()) as bus:
        collection = secretstorage.get_default_collection(bus)
        if base_url is None:
            wanted = lambda service: service.startswith("session-magics ")  # noqa: E731
        else:
            from session_magics.profile import Profile

            only = Profile(name="cleanup", base_url=base_url).keyring_service
            wanted = lambda service: service == only  # noqa: E731
        for item in list(collection.get_all_items()):
            if wanted(item.get_attributes().get("service", "")):
                item.delete()


@pytest.fixture
def secret_service_keyring(_secret_service_status: str | None) -> Iterator[keyring.backend.KeyringBackend]:
    """``keyring.backends.SecretService.Keyring()`` on the private, throwaway keyring,
    with no session-magics entry in it at the start and at the end of the test."""
    problem = _secret_service_status
    if problem is not None:
        cannot_run(f"no usable Secret Service ({problem}); {SECRET_SERVICE_HOW}")
    from keyring.backends import SecretService

    forget_session_magics_entries()
    yield SecretService.Keyring()
    forget_session_magics_entries()
