"""Keyring backends for tests.

Each one behaves like a keyring the package meets in the wild: a plain store,
one that refuses large values (Windows Credential Manager), one that never
answers (a keyring waiting for a prompt nobody sees), a locked one, and one
that reads but cannot write. Tests pass them in explicitly or with
``keyring.set_keyring``.

keyring registers every ``KeyringBackend`` subclass it sees and would offer
these to its own backend discovery (a ``keyring.get_keyring()`` in the test
process would then chain them behind the real Secret Service). ``viable =
False`` keeps them out of discovery; ``priority = 1`` is what they report
when asked, like a real but not preferred backend.
"""

from __future__ import annotations

import threading

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError, PasswordSetError


class MemoryKeyring(KeyringBackend):
    """A dict. ``reads`` counts get_password calls, ``writes`` set/delete calls."""

    priority = 1
    viable = False

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.reads = 0
        self.writes = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.writes += 1
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.writes += 1
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise PasswordDeleteError("Password not found") from None


class LimitedKeyring(MemoryKeyring):
    """Rejects values over ``max_bytes``, like Windows Credential Manager.

    Windows stores the value as UTF-16 and allows 2560 bytes
    (CRED_MAX_CREDENTIAL_BLOB_SIZE), i.e. 1280 ASCII characters.
    """

    def __init__(self, max_bytes: int = 2560, encoding: str = "utf-16-le") -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.encoding = encoding

    def set_password(self, service: str, username: str, password: str) -> None:
        size = len(password.encode(self.encoding))
        if size > self.max_bytes:
            self.writes += 1
            raise PasswordSetError(
                f"(1783, 'CredWrite', 'The stub received bad data.') [{size} bytes > {self.max_bytes}]"
            )
        super().set_password(service, username, password)


class HangingKeyring(MemoryKeyring):
    """Every call blocks until ``release()``; then it acts as a MemoryKeyring.

    ``entered`` is set once a call is blocked, so a test can wait for that;
    ``blocked`` is the number of calls blocked right now (one that gave up or was
    released is no longer counted), and ``idle`` is set whenever that number is 0.
    A call never blocks longer than ``max_block`` seconds (then it raises), so a
    test that forgets to release leaks no thread forever; the ``hanging_keyring``
    fixture releases in its teardown.
    """

    def __init__(self, max_block: float = 30.0) -> None:
        super().__init__()
        self.max_block = max_block
        self.entered = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self._released = threading.Event()
        self._count = threading.Lock()
        self.calls = 0
        self.blocked = 0

    def release(self) -> None:
        self._released.set()

    def _block(self) -> None:
        with self._count:
            self.calls += 1
            self.blocked += 1
            self.idle.clear()
        self.entered.set()
        try:
            if not self._released.wait(self.max_block):
                raise RuntimeError(f"HangingKeyring was not released within {self.max_block} s")
        finally:
            with self._count:
                self.blocked -= 1
                if not self.blocked:
                    self.idle.set()

    def get_password(self, service: str, username: str) -> str | None:
        self._block()
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._block()
        super().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self._block()
        super().delete_password(service, username)


class HangingWriteKeyring(MemoryKeyring):
    """Reads answer; a write waits until ``release`` is set (a keyring prompt nobody
    answers... until later), then is stored. ``entered`` is set once a write waits.
    Writes for the user names in ``passing`` go through at once. A write never waits
    longer than 30 s (then it fails), so a test that forgets to release leaks no thread."""

    def __init__(self, passing: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.passing = passing
        self.release = threading.Event()
        self.entered = threading.Event()

    def set_password(self, service: str, username: str, password: str) -> None:
        if username not in self.passing:
            self.entered.set()
            assert self.release.wait(30), "HangingWriteKeyring was not released within 30 s"
        super().set_password(service, username, password)


class LockedKeyring(KeyringBackend):
    """A locked collection whose unlock prompt was dismissed."""

    priority = 1
    viable = False

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")


class FailingWriteKeyring(MemoryKeyring):
    """Reads work; every set_password raises PasswordSetError."""

    def set_password(self, service: str, username: str, password: str) -> None:
        self.writes += 1
        raise PasswordSetError("the keyring refused to store the value")
