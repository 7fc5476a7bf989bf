"""The keyring store: real Secret Service round trips and every failure mode."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from keyring.backends import chainer, fail, null

from session_magics import KeyringError
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import KeyringStore, MemoryStore, unsafe_backend_reason
from session_magics.tokens import Token
from tests.keyrings import FailingWriteKeyring, LimitedKeyring, LockedKeyring, MemoryKeyring


def chain(*backends):
    """A keyring chainer over the given backends (highest priority first).

    keyring registers every backend class it sees; ``viable = False`` keeps this one out
    of a later test's discovery, which would fail on it (its ``backends`` is per instance)."""

    class Chain(chainer.ChainerBackend):
        viable = False

        @property
        def backends(self):
            return list(backends)

    return Chain()


def profile(user="alice", host=None):
    host = host or f"h{uuid.uuid4().hex[:8]}.example.com"
    return Profile(name="p", base_url=f"https://{host}/v1", user=user)


def token(n=1, size=0, user="alice"):
    return Token(
        f"access-{n}-" + "x" * size, refresh_token=f"refresh-{n}", expires_at=time.time() + 60, user=user
    )


def test_round_trip_and_last_user(memory_keyring):
    store = KeyringStore(memory_keyring)
    p = profile()
    store.save(p, token())
    fresh = KeyringStore(memory_keyring)  # a new kernel
    anonymous = Profile(name="p", base_url=p.base_url)  # %login URL without --user
    got = fresh.load(anonymous)
    assert got is not None and got.access_token == "access-1-" and got.user == "alice"


def test_read_once_then_cached(memory_keyring):
    store = KeyringStore(memory_keyring)
    p = profile()
    store.save(p, token())
    reads = memory_keyring.reads
    for _ in range(100):
        store.load(p)
    assert memory_keyring.reads == reads  # saved values are already cached
    store.load(p, fresh=True)
    assert memory_keyring.reads == reads + 1


def test_written_only_when_changed(memory_keyring):
    store = KeyringStore(memory_keyring)
    p = profile()
    t = token()
    store.save(p, t)
    writes = memory_keyring.writes
    store.save(p, t)
    assert memory_keyring.writes == writes
    store.save(p, token(2))
    assert memory_keyring.writes == writes + 1


def test_large_values_are_split_under_the_windows_limit():
    ring = LimitedKeyring(max_bytes=2560)
    store = KeyringStore(ring)
    p = profile()
    big = token(size=6000)
    store.save(p, big)
    assert len(ring.entries) > 3  # chunks + header + last user
    assert KeyringStore(ring).load(p) == big
    store.delete(p)
    assert set(ring.entries) == {(p.keyring_service, "@last-user")}


def test_hanging_keyring_times_out_without_waiting_for_the_call(hanging_keyring):
    store = KeyringStore(hanging_keyring, timeout=0.5)
    with pytest.raises(KeyringError, match="did not answer within 0.5 s"):
        store.load(profile())
    # The call is still blocked in the keyring: the store gave up on it, it did not wait
    # for it to end (a store that waited would return only once the call ended).
    assert (hanging_keyring.calls, hanging_keyring.blocked) == (1, 1)
    hanging_keyring.release()
    assert hanging_keyring.idle.wait(30)


def test_locked_keyring():
    with pytest.raises(KeyringError, match="locked"):
        KeyringStore(LockedKeyring()).load(profile())


@pytest.mark.parametrize(
    "backend, words",
    [(fail.Keyring(), "no OS keyring"), (null.Keyring(), "null backend")],
    ids=["fail", "null"],
)
def test_unusable_backends_are_refused(backend, words):
    with pytest.raises(KeyringError, match=words):
        KeyringStore(backend).load(profile())


def test_plaintext_backend_refused_unless_allowed(tmp_path):
    from keyrings.alt.file import PlaintextKeyring

    ring = PlaintextKeyring()
    ring.file_path = str(tmp_path / "keyring.cfg")
    with pytest.raises(KeyringError, match="plaintext"):
        KeyringStore(ring).save(profile(), token())
    KeyringStore(ring, allow_plaintext=True).save(profile(), token())
    assert "plaintext" in (unsafe_backend_reason(chain(MemoryKeyring(), ring)) or "")


def test_damaged_entry(memory_keyring):
    p = profile()
    memory_keyring.set_password(p.keyring_service, "alice", "{not json")
    with pytest.raises(KeyringError, match="damaged"):
        KeyringStore(memory_keyring).load(p)


def test_failed_write_keeps_token_in_memory_and_warns():
    session = ApiSession(profile(), KeyringStore(FailingWriteKeyring()))
    session._remember(token())
    assert session.token is not None and session.token.access_token.startswith("access-1")
    assert session.storage_warning and "memory" in session.storage_warning


def test_memory_store():
    store = MemoryStore()
    p = profile()
    store.save(p, token())
    assert store.load(p).access_token.startswith("access-1")
    assert store.last_user(p) == "alice"
    store.delete(p)
    assert store.load(p) is None


# ---------------------------------------------------------------- Secret Service
def test_secret_service_round_trip(secret_service_keyring):
    store = KeyringStore(secret_service_keyring)
    p = profile()
    big = token(size=5000)
    store.save(p, big)
    assert KeyringStore(secret_service_keyring).load(Profile(name="p", base_url=p.base_url)) == big
    raw = secret_service_keyring.get_password(p.keyring_service, "alice")
    assert json.loads(raw)["chunks"] >= 5
    store.delete(p)
    assert KeyringStore(secret_service_keyring).load(p) is None


def test_secret_service_three_processes_write_and_read_concurrently(secret_service_keyring, tmp_path):
    """Three kernels saving (chunked) tokens for different users at one origin at once lose
    nothing, and each reads back exactly what it saved. Without the store's file lock,
    gnome-keyring 42 failed this about once in 40 runs of a smaller version (its default
    collection briefly "missing", so secretstorage tried to create one: "Prompt dismissed")."""
    host = f"h{uuid.uuid4().hex[:8]}.example.com"
    lock = tmp_path / "keyring.lock"
    script = textwrap.dedent(
        f"""
        import sys
        from keyring.backends import SecretService
        from session_magics.profile import Profile
        from session_magics.store import KeyringStore
        from session_magics.tokens import Token
        user = sys.argv[1]
        # No timeout to speak of: this is about losing nothing, not about speed (on a
        # loaded machine a save can wait for the others' longer than the default 10 s).
        store = KeyringStore(SecretService.Keyring(), lock_path={str(lock)!r}, timeout=300)
        p = Profile(name="p", base_url="https://{host}", user=user)
        for n in range(15):
            big = f"{{user}}-{{n}}-" + "x" * 2500  # three chunks
            store.save(p, Token(big, refresh_token=f"r-{{user}}-{{n}}", user=user))
            got = KeyringStore(SecretService.Keyring(), lock_path={str(lock)!r}, timeout=300).load(p)
            assert got is not None and got.access_token == big, (n, got and got.access_token[:20])
        """
    )
    users = ("u1", "u2", "u3")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, u], stderr=subprocess.PIPE, text=True) for u in users
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-2000:] for e in errors)
    store = KeyringStore(secret_service_keyring, lock_path=lock)
    for user in users:
        got = store.load(Profile(name="p", base_url=f"https://{host}", user=user))
        assert got is not None and got.access_token.startswith(f"{user}-14-")
    assert store.last_user(Profile(name="p", base_url=f"https://{host}")) in users


HOLD_LOCK = textwrap.dedent(
    """
    import pathlib, sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    with lock:
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        pathlib.Path(sys.argv[3]).write_text("released")
    """
)


def test_a_save_waits_while_another_process_holds_the_keyring_lock(tmp_path):
    lock, marker = tmp_path / "keyring.lock", tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock), "0.5", str(marker)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        ring = MemoryKeyring()
        KeyringStore(ring, lock_path=lock).save(profile(), token())
        # The holder writes the marker just before it lets go: the save came after that.
        assert marker.read_text() == "released"
        assert ring.writes == 2  # the token and @last-user
    finally:
        holder.kill()
        holder.wait()


def test_a_keyring_lock_held_too_long_is_a_clear_error(tmp_path):
    lock = tmp_path / "keyring.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock), "600", str(tmp_path / "never")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        ring = MemoryKeyring()
        with pytest.raises(KeyringError, match="keyring lock .* stayed held") as info:
            KeyringStore(ring, timeout=0.3, lock_path=lock).save(profile(), token())
        assert str(lock) in str(info.value)
        assert ring.writes == 0
    finally:
        holder.kill()
        holder.wait()


def test_the_keyring_lock_is_reentrant_and_shared_by_threads(tmp_path):
    """load() takes the lock and calls last_user(), which takes it again (same thread);
    threads of one kernel exclude each other like processes do."""
    import threading

    ring = MemoryKeyring()
    store = KeyringStore(ring, lock_path=tmp_path / "keyring.lock")
    p = profile(user=None)
    store.save(Profile(name="p", base_url=p.base_url, user="alice"), token())
    inside, overlaps = [], []

    class Watching(MemoryKeyring):
        def get_password(self, service, username):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.01)
            inside.pop()
            return ring.get_password(service, username)

    watched = KeyringStore(Watching(), lock_path=tmp_path / "keyring.lock")
    threads = [threading.Thread(target=lambda: watched.load(p, fresh=True)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(overlaps) == 16 and max(overlaps) == 1  # @last-user + token per load, never two at once
    assert KeyringStore(ring, lock_path=tmp_path / "keyring.lock").load(p).user == "alice"


def test_an_unusable_lock_path_does_not_stop_the_keyring(tmp_path):
    (tmp_path / "a-file").write_text("")
    ring = MemoryKeyring()
    store = KeyringStore(ring, lock_path=tmp_path / "a-file" / "keyring.lock")
    store.save(profile(), token())
    assert ring.writes == 2


def test_default_lock_path_is_private_to_the_user(tmp_path, monkeypatch):
    from session_magics.store import default_lock_path

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_lock_path() == tmp_path / "session-magics" / "keyring.lock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_lock_path() == tmp_path / "cache" / "session-magics" / "keyring.lock"
    KeyringStore(MemoryKeyring()).save(profile(), token())
    made = default_lock_path()
    assert made.exists() and oct(made.parent.stat().st_mode & 0o777) == "0o700"


def test_chainer_is_unwrapped_to_its_best_safe_backend(tmp_path):
    from keyrings.alt.file import PlaintextKeyring

    from session_magics.store import safe_backend

    plain = PlaintextKeyring()
    plain.file_path = str(tmp_path / "k.cfg")
    good = MemoryKeyring()
    assert safe_backend(chain(plain, good)) is good
    assert "plaintext" in (unsafe_backend_reason(safe_backend(chain(plain))) or "")


def test_a_write_that_fails_unexpectedly_once_is_tried_again():
    """What two processes racing on one Secret Service entry look like to the loser."""

    class Flaky(MemoryKeyring):
        failures = 1

        def set_password(self, service, username, password):
            if self.failures:
                self.failures -= 1
                raise RuntimeError("Item does not exist!")
            super().set_password(service, username, password)

    ring = Flaky()
    store = KeyringStore(ring)
    p = profile()
    store.save(p, token())
    assert KeyringStore(ring).load(p).access_token.startswith("access-1")


def test_a_write_that_keeps_failing_is_an_error():
    class Broken(MemoryKeyring):
        def set_password(self, service, username, password):
            self.writes += 1
            raise RuntimeError("still broken")

    ring = Broken()
    with pytest.raises(KeyringError, match="still broken"):
        KeyringStore(ring).save(profile(), token())
    assert ring.writes == 3
