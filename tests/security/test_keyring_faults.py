"""Keyring faults, through the magics: clear errors, and no lost login."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import keyring
import pytest
import requests
from keyring.backends import fail, null
from keyring.errors import PasswordSetError

from session_magics import KeyringError
from session_magics.demo import DemoServer
from session_magics.tokens import Token
from tests.keyrings import FailingWriteKeyring, LimitedKeyring, LockedKeyring, MemoryKeyring
from tests.security.helpers import (
    DEMO_PASSWORD,
    PASSWORD_ENV,
    assert_short_error,
    login,
    session_of,
    shown,
)


class SwitchableKeyring(MemoryKeyring):
    """A MemoryKeyring whose writes can be made to fail (a keyring locked mid-session)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = False

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.refuse:
            self.writes += 1
            raise PasswordSetError("the collection is locked")
        super().set_password(service, username, password)


# ------------------------------------------------------------- no usable keyring
@pytest.mark.parametrize(
    "backend, words",
    [
        (fail.Keyring(), ["no OS keyring", "--no-keyring"]),
        (null.Keyring(), ["null backend", "--no-keyring"]),
        (LockedKeyring(), ["locked", "--no-keyring"]),
    ],
    ids=["no-backend", "null-backend", "locked-collection"],
)
def test_unusable_keyring_is_one_clear_line_and_sends_no_password(api, new_shell, backend, words):
    keyring.set_keyring(backend)
    shell = new_shell()
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, KeyringError, *words)
    assert api.stats()["password_grants"] == 0  # refused before the password went anywhere
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --no-keyring")
    assert run.error is None, shown(run)
    assert shell.run("%%api\nGET /me").result.status_code == 200


def test_hanging_keyring_times_out_with_a_clear_line(api, new_shell, hanging_keyring):
    keyring.set_keyring(hanging_keyring)
    shell = new_shell()
    shell.magics.store(True)  # the store exists already: the new timeout must still apply
    shell.run("%config SessionMagics.keyring_timeout = 0.5")
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, KeyringError, "did not answer within 0.5 s", "--no-keyring")
    # The keyring call is still blocked: the login gave up on it, it did not wait for it.
    assert (hanging_keyring.calls, hanging_keyring.blocked) == (1, 1)
    hanging_keyring.release()
    assert hanging_keyring.idle.wait(30)


# ---------------------------------------------------- writes that fail: lose nothing
def test_failed_write_after_login_keeps_the_token_in_memory(api, new_shell):
    ring = FailingWriteKeyring()
    keyring.set_keyring(ring)
    shell = new_shell()
    run = login(shell, api)
    assert "Logged in as demo" in run.stdout
    assert "could not be saved" in run.stderr and "memory" in run.stderr
    for _ in range(5):
        assert shell.run("%%api\nGET /me").result.status_code == 200
    api.advance_clock(301)  # expired at the server: refreshed from memory
    assert shell.run("%%api\nGET /me").result.status_code == 200
    run = shell.run(f"%login {api.url}")  # a new %login finds the session it has
    assert "Already logged in as demo" in run.stdout, shown(run)
    stats = api.stats()
    assert stats["password_grants"] == 1 and stats["refresh_grants"] == 1, stats
    assert ring.entries == {}


def test_keyring_that_stops_accepting_writes_never_brings_back_an_older_token(api, new_shell):
    """Stored T1; writes fail from now on; T1 is refreshed to T2 (memory only). When T2
    expires at the server, the store still holds T1, whose refresh token is spent: going
    back to it would lose the session. T2's refresh token must be used."""
    ring = SwitchableKeyring()
    keyring.set_keyring(ring)
    shell = new_shell()
    login(shell, api)
    ring.refuse = True
    for _ in range(3):
        api.advance_clock(301)
        run = shell.run("%%api\nGET /me")
        assert run.error is None and run.result.status_code == 200, shown(run)
    stats = api.stats()
    assert stats["password_grants"] == 1, stats
    assert stats["refresh_grants"] == 3 and stats["refresh_failures"] == 0, stats


def test_token_too_large_for_windows_credential_manager(odd, new_shell):
    """A 6 KB token is split over entries that each fit in 2560 bytes of UTF-16; a new
    kernel reassembles it and the API accepts it."""
    ring = LimitedKeyring(max_bytes=2560)
    keyring.set_keyring(ring)
    shell = new_shell()
    run = shell.run(f"%login {odd.url} --user big --password-env {PASSWORD_ENV} --login /big-token")
    assert run.error is None, shown(run)
    assert "could not be saved" not in run.stderr
    assert len(odd.big_token) > 2560 // 2
    assert len(ring.entries) >= 5
    assert all(len(v.encode("utf-16-le")) <= 2560 for v in ring.entries.values())
    assert shell.run("%%api\nGET /me").result.status_code == 200
    restarted = new_shell()
    run = restarted.run(f"%login {odd.url}")
    assert "Already logged in as big" in run.stdout, shown(run)
    assert restarted.run("%%api\nGET /me").result.data == {"username": "big"}


# ------------------------------------------------------ written only when changed
def test_keyring_is_written_only_when_the_token_changes(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    kr.reads = kr.writes = 0
    for _ in range(100):
        assert shell.run("%api GET /me").result.status_code == 200
    assert (kr.writes, kr.reads) == (0, 0)
    for n in range(1, 4):
        api.advance_clock(301)
        assert shell.run("%api GET /me").result.status_code == 200
        assert api.stats()["refresh_grants"] == n
        assert kr.writes == n  # one write set (the token entry) per refresh
        for _ in range(10):
            shell.run("%api GET /me")
        assert kr.writes == n


# --------------------------------------------- two processes, one Secret Service
PROCESS = textwrap.dedent(
    """
    import json, os, sys
    from IPython.core.interactiveshell import InteractiveShell
    url, stop = sys.argv[1], sys.argv[2]
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext session_magics").raise_error()
    ip.run_cell("%config SessionMagics.leeway = 0.2").raise_error()
    # Consistency, not speed: on a loaded machine the keyring lock can be busy for long.
    ip.run_cell("%config SessionMagics.keyring_timeout = 300").raise_error()
    import contextlib, io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ip.run_cell(f"%login {url} --user demo --password-env SM_SECURITY_PASSWORD").raise_error()
    logged_in = out.getvalue().startswith("Logged in")  # else: "Already logged in" (the other's)
    statuses = {}
    errors = []
    sent = 0
    print("SENT 0", flush=True)
    while not os.path.exists(stop):
        r = ip.run_cell("x = %api GET /me")
        sent += 1
        if r.error_in_exec is not None:
            errors.append(repr(r.error_in_exec))
        else:
            code = ip.user_ns["x"].status_code
            statuses[code] = statuses.get(code, 0) + 1
        print(f"SENT {sent}", flush=True)
    print("RESULT " + json.dumps({"statuses": statuses, "errors": errors[:5], "logged_in": logged_in}))
    """
)


class Kernel:
    """One of the PROCESS kernels: its output read as it comes, the requests it has sent."""

    def __init__(self, url: str, stop: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROCESS, url, str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self.lines: list[str] = []
        self.stderr = ""
        self.sent = -1  # -1: still logging in
        self.ended = False
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                if line.startswith("SENT "):
                    self.sent = int(line.split()[1])
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_until_sent(self, count: int) -> None:
        """Until this kernel has had answers to ``count`` requests (it fails if the kernel ends first)."""
        with self._changed:
            self._changed.wait_for(lambda: self.sent >= count or self.ended, timeout=300)
            if self.sent >= count:
                return
        if self.ended:  # then stderr says why
            self.proc.wait(30)
            self._readers[1].join(30)
        raise AssertionError(f"the kernel sent {self.sent} requests, not {count}: {self.stderr[-3000:]}")

    def result(self) -> dict:
        """What the kernel reported when it stopped (after the stop file appeared)."""
        code = self.proc.wait(120)
        for reader in self._readers:
            reader.join(30)
        assert code == 0, self.stderr[-3000:]
        return json.loads("".join(self.lines).split("RESULT ", 1)[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_two_processes_login_and_refresh_against_one_secret_service(
    secret_service_keyring, monkeypatch, tmp_path
):
    """Two kernels, one user, one API, one keyring entry; access tokens live 1 s and the
    server's clock jumps ahead six times, each time after both kernels have got answers
    since the last jump (401s: each kernel re-reads the entry the other wrote; when both
    hold one refresh token, one of them loses the race and takes the token the other
    stored). Both keep working without a new login, and the entry stays valid."""
    monkeypatch.setenv(PASSWORD_ENV, DEMO_PASSWORD)
    stop = tmp_path / "stop"
    with DemoServer(access_ttl=1, refresh_ttl=600, password=DEMO_PASSWORD) as api:
        kernels = [Kernel(api.url, stop) for _ in range(2)]
        try:
            for kernel in kernels:
                kernel.wait_until_sent(0)  # logged in
            for _ in range(6):
                before = [kernel.sent for kernel in kernels]
                api.advance_clock(2)
                # Two more answers each: at least one for a request sent after the jump.
                for kernel, sent in zip(kernels, before, strict=True):
                    kernel.wait_until_sent(sent + 2)
            stop.touch()
            results = [kernel.result() for kernel in kernels]
        finally:
            stop.touch()
            for kernel in kernels:
                kernel.kill()
        for result in results:
            assert result["errors"] == [], result
            assert set(result["statuses"]) == {"200"}, result
            assert result["statuses"]["200"] >= 12
        stats = api.stats()
        # A kernel that starts after the other saved its token uses that one ("Already
        # logged in"). Any further password grant would be a session lost on the way.
        logins = sum(result["logged_in"] for result in results)
        assert logins >= 1 and stats["password_grants"] == logins, (stats, results)
        assert stats["refresh_grants"] >= 6, stats  # at least one per jump

        raw = secret_service_keyring.get_password(f"session-magics {api.url}", "demo")
        stored = Token.from_json(raw)
        answer = requests.post(
            f"{api.url}/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": stored.refresh_token},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text  # the stored entry is usable
    secret_service_keyring.delete_password(f"session-magics {api.url}", "demo")


def test_stored_entry_is_the_latest_token(api, kr, new_shell):
    """The entry in the keyring after a session: the latest token, complete and parseable."""
    shell = new_shell()
    login(shell, api)
    api.advance_clock(301)
    shell.run("%api GET /me")
    entry = json.loads(kr.get_password(f"session-magics {api.url}", "demo"))
    assert entry["a"] == session_of(shell, api.url).token.access_token
