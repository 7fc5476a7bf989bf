"""The test infrastructure is real: the Secret Service, its isolation, the fake keyrings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import keyring
import keyring.core
import pytest
from keyring.backends import SecretService, chainer
from keyring.errors import KeyringLocked, PasswordDeleteError, PasswordSetError

from tests.conftest import cannot_run, keyring_restored
from tests.keyrings import (
    FailingWriteKeyring,
    HangingKeyring,
    LimitedKeyring,
    LockedKeyring,
    MemoryKeyring,
)

ROOT = Path(__file__).resolve().parent.parent
WITH_SECRET_SERVICE = ROOT / "scripts" / "with-secret-service.sh"


def unique_service() -> str:
    return f"session-magics-test-{uuid.uuid4().hex}"


# --- the real Secret Service ---------------------------------------------------


def test_secret_service_round_trip(secret_service_keyring):
    service = unique_service()
    assert secret_service_keyring.get_password(service, "alice") is None
    secret_service_keyring.set_password(service, "alice", "s3cret")
    secret_service_keyring.set_password(service, "bob", "other")
    assert secret_service_keyring.get_password(service, "alice") == "s3cret"
    assert secret_service_keyring.get_password(service, "bob") == "other"
    secret_service_keyring.delete_password(service, "alice")
    assert secret_service_keyring.get_password(service, "alice") is None
    with pytest.raises(PasswordDeleteError):
        secret_service_keyring.delete_password(service, "alice")


def test_default_keyring_is_the_secret_service(secret_service_keyring):
    """keyring's own discovery (as in a fresh kernel) lands on the Secret Service.

    With other backends of priority > 0 installed (keyrings.alt's PlaintextKeyring is
    a test dependency) keyring wraps them all in a chain; the Secret Service must then
    come first, and a write through the module API must land there, not in a file.
    """
    keyring.core.init_backend()  # fresh discovery, as a new kernel would do it
    backend = keyring.get_keyring()
    others: list = []
    if isinstance(backend, chainer.ChainerBackend):
        chain = list(backend.backends)
        names = [f"{type(b).__module__}.{type(b).__name__}" for b in chain]
        assert chain and isinstance(chain[0], SecretService.Keyring), names
        others = chain[1:]
    else:
        assert isinstance(backend, SecretService.Keyring), backend
    service = unique_service()
    keyring.set_password(service, "alice", "via the module API")
    try:
        assert keyring.get_password(service, "alice") == "via the module API"
        assert SecretService.Keyring().get_password(service, "alice") == "via the module API"
        for other in others:
            assert other.get_password(service, "alice") is None, other
    finally:
        keyring.delete_password(service, "alice")


@pytest.mark.parametrize("size", [4 * 1024, 100 * 1024], ids=["4KB", "100KB"])
def test_large_values_round_trip(secret_service_keyring, size):
    service = unique_service()
    value = (uuid.uuid4().hex * (size // 32 + 1))[:size]
    secret_service_keyring.set_password(service, "alice", value)
    assert secret_service_keyring.get_password(service, "alice") == value
    secret_service_keyring.delete_password(service, "alice")


@pytest.mark.secretservice
@pytest.mark.slow
def test_wrapper_uses_a_throwaway_keyring_and_passes_the_exit_code(tmp_path):
    """Two runs share nothing, nothing can be D-Bus-activated, CMD's exit code comes back."""
    if not all(shutil.which(t) for t in ("dbus-daemon", "gnome-keyring-daemon")):
        cannot_run("dbus-daemon / gnome-keyring-daemon missing: run make system-deps")
    service = unique_service()
    script = (
        "import os, sys\n"
        "from keyring.backends import SecretService\n"
        "assert os.environ['SESSION_MAGICS_SECRET_SERVICE'] == '1'\n"
        "ring = SecretService.Keyring()\n"
        f"before = ring.get_password({service!r}, 'alice')\n"
        f"ring.set_password({service!r}, 'alice', 'kept?')\n"
        "print(os.environ['DBUS_SESSION_BUS_ADDRESS'])\n"
        "sys.exit(3 if before is None else 4)\n"
    )
    activatable = (
        "dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus "
        "org.freedesktop.DBus.ListActivatableNames"
    )
    env = {k: v for k, v in os.environ.items() if k != "SESSION_MAGICS_SECRET_SERVICE"}
    runs = [
        subprocess.run(
            [str(WITH_SECRET_SERVICE), sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 3, run.stderr  # 3: the value from the first run is gone
    buses = [run.stdout.strip() for run in runs]
    assert buses[0] != buses[1]
    assert os.environ.get("DBUS_SESSION_BUS_ADDRESS") not in buses
    # No service files on the private bus: a dead daemon cannot be replaced by an
    # activated one that would open the user's own keyring.
    names = subprocess.run(
        [str(WITH_SECRET_SERVICE), "sh", "-c", activatable],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert '"org.freedesktop.DBus"' in names
    assert "org.freedesktop.secrets" not in names


# --- the in-memory backends -------------------------------------------------------


def test_memory_keyring_counts_reads_and_writes(memory_keyring):
    assert memory_keyring.get_password("svc", "u") is None
    memory_keyring.set_password("svc", "u", "v")
    assert memory_keyring.get_password("svc", "u") == "v"
    memory_keyring.delete_password("svc", "u")
    with pytest.raises(PasswordDeleteError):
        memory_keyring.delete_password("svc", "u")
    assert (memory_keyring.reads, memory_keyring.writes) == (2, 3)


def test_test_backends_stay_out_of_keyring_discovery():
    found = {type(b) for b in keyring.backend.get_all_keyring()}
    ours = {MemoryKeyring, LimitedKeyring, HangingKeyring, LockedKeyring, FailingWriteKeyring}
    assert not found & ours


def test_limited_keyring_rejects_values_over_the_windows_limit():
    ring = LimitedKeyring()
    ring.set_password("svc", "u", "a" * 1280)  # 2560 bytes as UTF-16
    assert ring.get_password("svc", "u") == "a" * 1280
    with pytest.raises(PasswordSetError):
        ring.set_password("svc", "u", "a" * 1281)
    assert ring.get_password("svc", "u") == "a" * 1280  # the old value stays
    small = LimitedKeyring(max_bytes=10, encoding="utf-8")
    small.set_password("svc", "u", "x" * 10)
    with pytest.raises(PasswordSetError):
        small.set_password("svc", "u", "x" * 11)


def test_locked_keyring_raises_keyring_locked():
    ring = LockedKeyring()
    for call in (
        lambda: ring.get_password("svc", "u"),
        lambda: ring.set_password("svc", "u", "v"),
        lambda: ring.delete_password("svc", "u"),
    ):
        with pytest.raises(KeyringLocked):
            call()


def test_failing_write_keyring_reads_but_never_stores():
    ring = FailingWriteKeyring()
    ring.entries[("svc", "u")] = "old"
    assert ring.get_password("svc", "u") == "old"
    with pytest.raises(PasswordSetError):
        ring.set_password("svc", "u", "new")
    assert ring.get_password("svc", "u") == "old"
    assert (ring.reads, ring.writes) == (2, 1)


def test_hanging_keyring_blocks_until_released(hanging_keyring):
    results: list[str | None] = []
    worker = threading.Thread(
        target=lambda: results.append(hanging_keyring.get_password("svc", "u")), daemon=True
    )
    worker.start()
    assert hanging_keyring.entered.wait(30)
    assert hanging_keyring.blocked == 1 and not hanging_keyring.idle.is_set() and results == []
    hanging_keyring.release()
    worker.join(30)
    assert not worker.is_alive() and results == [None]
    assert hanging_keyring.blocked == 0 and hanging_keyring.idle.is_set()


def test_hanging_keyring_gives_up_after_max_block():
    ring = HangingKeyring(max_block=0.05)
    with pytest.raises(RuntimeError, match="not released"):
        ring.set_password("svc", "u", "v")
    assert ring.entries == {}


def test_set_keyring_does_not_leak_out_of_a_test():
    """What the autouse fixture does between tests, checked within one test (so the
    result does not depend on test order)."""
    before = keyring.core._keyring_backend
    with keyring_restored():
        keyring.set_keyring(LockedKeyring())
        assert isinstance(keyring.core._keyring_backend, LockedKeyring)
    assert keyring.core._keyring_backend is before


def test_session_magics_entries_are_forgotten_between_tests(secret_service_keyring):
    """The cleanup behind the ``api`` and ``secret_service_keyring`` fixtures removes
    session-magics entries (one origin, or all) and nothing else."""
    from tests.conftest import forget_session_magics_entries

    other = unique_service()
    ours = ["session-magics http://127.0.0.1:1", "session-magics http://127.0.0.1:10"]
    for service in [other, *ours]:
        secret_service_keyring.set_password(service, "alice", "value")
    forget_session_magics_entries("http://127.0.0.1:1")
    assert secret_service_keyring.get_password(ours[0], "alice") is None
    assert secret_service_keyring.get_password(ours[1], "alice") == "value"  # another port: kept
    forget_session_magics_entries()
    assert secret_service_keyring.get_password(ours[1], "alice") is None
    assert secret_service_keyring.get_password(other, "alice") == "value"
    secret_service_keyring.delete_password(other, "alice")


# --- the test shells ----------------------------------------------------------------


EXIT_PROBE = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from IPython.core.interactiveshell import InteractiveShell

reset_at_exit = InteractiveShell.atexit_operations

def reporting(self):
    print("RESET AT EXIT", flush=True)
    reset_at_exit(self)

InteractiveShell.atexit_operations = reporting  # what each new shell registers with atexit
from tests.ipython_helpers import Shell

for n in range(3):
    shell = Shell(f"{sys.argv[2]}/ipython{n}")
    shell.run("numbers = list(range(1000))")
    shell.close()
savers = [t for t in threading.enumerate() if t.name == "IPythonHistorySavingThread"]
print("CLOSED", len(savers), flush=True)
"""


def test_closed_test_shells_leave_nothing_for_the_interpreter_exit(tmp_path):
    """Nothing of a closed test shell waits for the interpreter's exit. IPython's atexit
    hooks did: every shell of the run stayed in memory, and at exit each was reset with a
    gc.collect() of its own, so pytest sat silent for a minute after its summary line."""
    run = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, str(Path(__file__).resolve().parent.parent), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "CLOSED 0" in run.stdout, run.stdout  # no history-saving thread left running
    assert "RESET AT EXIT" not in run.stdout, run.stdout
