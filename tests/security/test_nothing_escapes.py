"""Nothing secret escapes, whatever goes wrong: a keyring backend raising a BaseException,
%debug after a failed login, secrets in the environment, servers echoing secrets in any
encoding, absurd expiry values, and what the keyring keeps after shorter tokens,
%logout and keyring calls that finish late."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import keyring
import pytest

from session_magics import Interrupted, KeyringError, LoginError, RequestFailed
from session_magics.profile import Profile
from session_magics.redact import Redactor, Secret
from session_magics.store import KeyringStore
from session_magics.tokens import Token
from tests.keyrings import HangingWriteKeyring, MemoryKeyring
from tests.security.helpers import (
    DEMO_PASSWORD,
    PASSWORD_ENV,
    TOKEN_ENV,
    EchoServer,
    assert_absent,
    assert_short_error,
    issued_secrets,
    login,
    session_of,
    shown,
)

# ----------------------------------------------------------- walking frames
# Secret and Token hold secrets on purpose; their reprs show none (tested elsewhere). The
# in-memory test keyring stands for the OS keyring, whose secrets live in another process.
_OPAQUE = (Secret, Token, MemoryKeyring)
_SKIP = (types.ModuleType, type, types.CodeType)


def reachable_texts(frames: list[types.FrameType], limit: int = 200_000) -> Iterator[str]:
    """The reprs of everything a debugger reaches from these frames' local variables:
    the values, and inside them containers, attributes (``__dict__``, ``__slots__``) and
    closures, a few levels deep. Secret and Token stop the walk (their repr is what shows)."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(frame.f_locals, 0) for frame in frames]
    while todo and len(seen) < limit:
        obj, depth = todo.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        try:
            yield repr(obj)[:100_000]
        except Exception:
            continue
        if isinstance(obj, (str, bytes, int, float, *_OPAQUE)) or depth >= 5:
            continue
        children: list[Any] = []
        if isinstance(obj, dict):
            children += list(obj.keys()) + list(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            children += list(obj)
        else:
            children += list(getattr(obj, "__dict__", {}).values())
            for cls in type(obj).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if isinstance(name, str) and hasattr(obj, name):
                        children.append(getattr(obj, name))
            for cell in getattr(obj, "__closure__", None) or ():
                with contextlib.suppress(ValueError):  # an empty cell
                    children.append(cell.cell_contents)
        todo += [(child, depth + 1) for child in children]


def traceback_frames(exc: BaseException | None, tb: types.TracebackType | None) -> list[types.FrameType]:
    """Every frame of ``tb`` and of the exceptions chained to ``exc`` (what %debug can reach)."""
    frames: list[types.FrameType] = []
    seen: set[int] = set()
    pending: list[tuple[BaseException | None, types.TracebackType | None]] = [(exc, tb)]
    while pending:
        error, trace = pending.pop()
        while trace is not None:
            frames.append(trace.tb_frame)
            trace = trace.tb_next
        for chained in (getattr(error, "__cause__", None), getattr(error, "__context__", None)):
            if chained is not None and id(chained) not in seen:
                seen.add(id(chained))
                pending.append((chained, chained.__traceback__))
    return frames


def assert_no_frame_holds(*secrets: str) -> None:
    """sys.last_traceback (IPython sets it for %debug) reaches no frame holding a secret."""
    frames = traceback_frames(sys.last_value, sys.last_traceback)
    assert frames, "no traceback was kept"
    for text in reachable_texts(frames):
        for secret in secrets:
            assert secret not in text, f"a frame reachable from the traceback holds a secret: {text[:300]}"


def run_debugger(shell: Any, commands: str) -> str:
    """Run %debug with ``commands`` typed at its prompt; what it printed."""
    stdin = sys.stdin
    sys.stdin = io.StringIO(commands)
    try:
        run = shell.run("%debug")
    finally:
        sys.stdin = stdin
    return shown(run)


# ============================================== 1. a keyring raising BaseException
class Abort(BaseException):
    """A backend's own BaseException (not an Exception)."""


class RaisingKeyring(MemoryKeyring):
    """Reads work; writing a token entry raises ``error`` (a copy of it, with the value)."""

    def __init__(self, error: type[BaseException]) -> None:
        super().__init__()
        self.error = error

    def set_password(self, service: str, username: str, password: str) -> None:
        if username != "@last-user":
            raise self.error(f"backend gave up writing {password}")
        super().set_password(service, username, password)


@pytest.fixture
def verbose_shell(new_shell):
    shell = new_shell()
    assert shell.run("%xmode Verbose").error is None
    return shell


@pytest.mark.parametrize("error", [SystemExit, Abort, GeneratorExit], ids=lambda e: e.__name__)
def test_backend_raising_a_base_exception_on_save_is_a_warning_without_the_token(api, verbose_shell, error):
    keyring.set_keyring(RaisingKeyring(error))
    run = verbose_shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert "Logged in as demo" in run.stdout
    assert "could not be saved" in run.stderr and error.__name__ in run.stderr
    assert_absent(shown(run) + run.all_text, DEMO_PASSWORD, *issued_secrets(api.state))
    assert verbose_shell.run("%%api\nGET /me").result.status_code == 200  # kept in memory


def test_backend_raising_keyboard_interrupt_on_save_leaves_no_token_in_the_traceback(api, verbose_shell):
    keyring.set_keyring(RaisingKeyring(KeyboardInterrupt))
    run = verbose_shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, Interrupted, "keyring")
    assert_absent(shown(run), DEMO_PASSWORD, *issued_secrets(api.state))
    assert_no_frame_holds(DEMO_PASSWORD, *issued_secrets(api.state))


@pytest.mark.parametrize("error", [SystemExit, Abort, KeyboardInterrupt], ids=lambda e: e.__name__)
def test_base_exception_from_a_save_called_directly_drops_the_frames_holding_the_token(memory_keyring, error):
    """The store itself is a boundary: used from plain Python, a BaseException leaving
    save() carries no frame that held the token (the value being written is in several)."""

    store = KeyringStore(RaisingKeyring(error), lock_path=None)
    token = Token("tok-" + "s3cret" * 10, refresh_token="ref-" + "r3fresh" * 10, user="u")
    profile = Profile(name="p", base_url="http://127.0.0.1:1", user="u")
    with pytest.raises(BaseException) as caught:
        store.save(profile, token)
    exc = caught.value
    assert not isinstance(exc, Exception) or isinstance(exc, KeyringError), exc
    frames = traceback_frames(exc, exc.__traceback__)
    for text in reachable_texts(frames) if frames else ():
        assert "s3cret" not in text and "r3fresh" not in text, text[:300]
    assert "s3cret" not in str(exc) and "r3fresh" not in str(exc)


def test_secret_service_backend_raising_a_base_exception(api, secret_service_keyring, verbose_shell):
    """The real Secret Service, whose write of the token entry is aborted by a BaseException
    (as a backend's prompt machinery might): one warning line, no token shown anywhere."""
    from keyring.backends import SecretService

    class Aborting(SecretService.Keyring):
        viable = False  # out of keyring's own discovery (see tests/keyrings.py)

        def set_password(self, service: str, username: str, password: str) -> None:
            if username != "@last-user":
                raise Abort(f"aborted while writing {password}")
            super().set_password(service, username, password)

    keyring.set_keyring(Aborting())
    run = verbose_shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert run.error is None, shown(run)
    assert "could not be saved" in run.stderr and "Abort" in run.stderr
    assert_absent(shown(run), DEMO_PASSWORD, *issued_secrets(api.state))
    assert secret_service_keyring.get_password(f"session-magics {api.url}", "demo") is None


# ============================================== 2. %debug after a failed login
@pytest.mark.parametrize(
    "extra, error",
    [
        ("--login /auth/token", LoginError),  # wrong password: the server says so
        ("--login http://127.0.0.1:9/refused", RequestFailed),  # nobody listens
    ],
    ids=["wrong-password", "connection-refused"],
)
def test_debug_after_a_failed_login_reaches_no_frame_holding_the_password(
    api, kr, new_shell, monkeypatch, extra, error
):
    wrong = "wr0ng-Passw0rd-for-debug-5521"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    shell = new_shell()
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} {extra}")
    assert isinstance(run.error, error), shown(run)
    assert_no_frame_holds(wrong)
    # What a person would type in %debug: every frame's locals, from the innermost up.
    out = run_debugger(shell, "where\n" + "p locals()\nup\n" * 25 + "q\n")
    assert "'failure':" in out and "_login_env" in out, out[:2000]  # it did walk and print locals
    assert wrong not in out, out[:3000]


def test_debug_after_a_login_the_server_refuses_with_an_echo(new_shell, kr, monkeypatch):
    """A login endpoint that repeats the password in its error: not in the message, not in
    any frame the traceback reaches."""
    password = "p&ss<w\"rd'-Echo-9931"
    monkeypatch.setenv(PASSWORD_ENV, password)
    with EchoServer() as echo:
        shell = new_shell()
        run = shell.run(f"%login {echo.url} --user demo --password-env {PASSWORD_ENV} --login /echo-login")
    line = assert_short_error(run, LoginError, "400")
    assert_absent(line, password)
    assert "p&amp;ss" not in line and "p%26ss" not in line
    assert_no_frame_holds(password)


# ============================================== 3. secrets read from the environment
def test_password_env_leaves_the_environment_and_relogins_still_work(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    assert PASSWORD_ENV not in os.environ
    env_magic = shell.run("%env")
    assert PASSWORD_ENV not in shown(env_magic) + repr(env_magic.result)
    child = shell.run(f"!env | grep -c {PASSWORD_ENV} || true")
    assert DEMO_PASSWORD not in shown(child)
    out = shell.run("import subprocess\nsubprocess.run(['env'], capture_output=True, text=True).stdout")
    assert PASSWORD_ENV not in out.result and DEMO_PASSWORD not in out.result
    # Both tokens expire: the kernel logs in again with the password it kept.
    api.advance_clock(4000)
    api.reset_stats()
    run = shell.run("%%api\nGET /me")
    assert run.error is None and run.result.status_code == 200, shown(run)
    assert api.stats()["password_grants"] == 1
    assert_absent(run.all_text + repr(shell.magics.sessions), DEMO_PASSWORD)


def test_setting_the_variable_again_replaces_the_kept_password(api, kr, new_shell, monkeypatch):
    shell = new_shell()
    login(shell, api)
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV} --force")
    assert isinstance(run.error, LoginError), shown(run)  # the new value was used
    assert PASSWORD_ENV not in os.environ


@contextlib.contextmanager
def echo_login(new_shell, monkeypatch, token: str) -> Iterator[tuple[Any, EchoServer]]:
    """A fresh shell logged in with ``%login --token-env`` (``token`` pasted into the
    variable) to an :class:`EchoServer` that accepts it; the shell and the server."""
    monkeypatch.setenv(TOKEN_ENV, token)
    with EchoServer() as echo:
        echo.accept(token)
        shell = new_shell()
        run = shell.run(f"%login {echo.url} --token-env {TOKEN_ENV}")
        assert run.error is None, shown(run)
        yield shell, echo


def test_token_env_leaves_the_environment(kr, new_shell, monkeypatch):
    secret = "pasted-Token-env-27182818284"
    with echo_login(new_shell, monkeypatch, secret) as (shell, _):
        assert TOKEN_ENV not in os.environ
        child = shell.run("import subprocess\nsubprocess.run(['env'], capture_output=True, text=True).stdout")
        assert secret not in child.result
        assert shell.run("%%api\nGET /me").result.status_code == 200


# ============================================== 4. servers echoing secrets
ODD_TOKEN = "Tok/en+Va=lue&<\"q'>~x9Z-2718281828"


@pytest.fixture
def echo_shell(kr, new_shell, monkeypatch):
    with echo_login(new_shell, monkeypatch, ODD_TOKEN) as (shell, echo):
        yield shell, echo


def _encodings(secret: str) -> list[str]:
    import html
    import urllib.parse

    quoted = urllib.parse.quote(secret, safe="")
    return [
        secret,
        quoted,
        quoted.lower(),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        html.escape(secret),
        html.escape(secret, quote=False),
        "Va=lue",  # a recognisable piece
    ]


@pytest.mark.parametrize("kind", ["json", "forbidden", "html", "text", "header", "records"])
def test_a_server_echoing_the_token_never_gets_it_displayed(echo_shell, kind):
    shell, _ = echo_shell
    run = shell.run(f"%%api -v -o r\nGET /echo/{kind}")
    assert run.error is None, shown(run)
    result = shell.ip.user_ns["r"]
    raw = result.text + "".join(f"{k}: {v}" for k, v in result.headers.items())
    assert any(form in raw for form in _encodings(ODD_TOKEN)), raw[:500]  # it was echoed
    bundle, _ = result._repr_mimebundle_()
    texts = [
        shown(run),
        json.dumps([d for d in run.displayed], default=str),
        json.dumps(bundle, default=str),
        repr(result),
        result.headers_text(),
        result.summary(),
    ]
    for text in texts:
        for form in _encodings(ODD_TOKEN):
            assert form not in text, f"{form!r} in {text[:1500]}"
    assert "●●●●" in "".join(texts)


def test_short_password_echoed_in_a_login_error_is_hidden(new_shell, kr, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "pw7")
    with EchoServer() as echo:
        shell = new_shell()
        run = shell.run(f"%login {echo.url} --user demo --password-env {PASSWORD_ENV} --login /echo-login")
    line = assert_short_error(run, LoginError, "400")
    import re

    assert not re.search(r"(?<![A-Za-z0-9])pw7(?![A-Za-z0-9])", line), line


def test_redactor_hides_every_encoding_and_mixes():
    import html
    import urllib.parse

    secret = "é-p&ss<w\"rd'/+ 😀"
    redactor = Redactor([secret])
    for form in [
        *_encodings(secret)[:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret).replace("/", "\\/")[1:-1],
        html.escape(secret).replace("&#x27;", "&#39;"),
        urllib.parse.quote(secret, safe="").replace("%2F", "%2f"),
    ]:
        assert redactor.text(f"<{form}>") == "<●●●●>", form
    assert repr(redactor).count("secret") == 1 and secret not in repr(redactor)
    assert Redactor(["ab"]).text("about ab, cab") == "about ●●●●, cab"


# ============================================== 5. absurd expiry values
ABSURD = [
    "1e308",
    "Infinity",
    "NaN",
    "-Infinity",
    '"Infinity"',
    '"123456789012345678901234567890"',
    "1" + "0" * 400,
]


@pytest.mark.parametrize("raw", [*ABSURD, "jwt:1e300"], ids=lambda r: r[:12])
def test_absurd_expiry_is_unknown_and_breaks_nothing(kr, new_shell, raw):
    from urllib.parse import quote

    with EchoServer() as echo:
        shell = new_shell()
        run = shell.run(
            f"%login {echo.url} --user demo --password-env {PASSWORD_ENV} --login /token?exp={quote(raw)}"
        )
        assert run.error is None, shown(run)
        assert "token expiry unknown" in run.stdout, run.stdout
        for cell in ("%login --status", "%%api\nGET /me", f"%login {echo.url}"):
            run = shell.run(cell)
            assert run.error is None and "Traceback" not in shown(run), shown(run)
        assert "Already logged in" in run.stdout
        # The entry in the keyring works for a new kernel too.
        restarted = new_shell()
        run = restarted.run(f"%login {echo.url}")
        assert run.error is None and "Already logged in" in run.stdout, shown(run)
        assert restarted.run("%%api\nGET /me").result.status_code == 200


@pytest.mark.parametrize("stored", ["1e308", "Infinity", "NaN", "1e300"])
def test_an_entry_with_an_absurd_expiry_written_earlier_does_not_break_login(kr, new_shell, stored):
    """An entry as an older version wrote it (JSON allows Infinity and NaN): read as
    'unknown expiry', never a traceback in every later %login."""
    with EchoServer() as echo:
        echo.accept("stored-token-1234567890")
        entry = f'{{"a":"stored-token-1234567890","t":"Bearer","e":{stored},"u":"demo","o":{stored}}}'
        kr.set_password(f"session-magics {echo.url}", "demo", entry)
        kr.set_password(f"session-magics {echo.url}", "@last-user", "demo")
        shell = new_shell()
        run = shell.run(f"%login {echo.url}")
        assert run.error is None and "Already logged in" in run.stdout and "unknown" in run.stdout, shown(run)
        assert shell.run("%login --status").error is None
        assert shell.run("%%api\nGET /me").result.status_code == 200


# ============================================== 6. keyring hygiene
def _profile(url: str = "http://127.0.0.1:8765") -> Profile:
    return Profile(name="p", base_url=url, user="u")


def _pieces(entries: dict[tuple[str, str], str], service: str) -> list[str]:
    return sorted(user for svc, user in entries if svc == service and user != "@last-user")


def test_shorter_token_and_logout_leave_no_old_piece(memory_keyring):
    store = KeyringStore(memory_keyring, lock_path=None)
    profile = _profile()
    service = profile.keyring_service
    long_token = Token("L" * 4500, refresh_token="R" * 500, user="u")
    store.save(profile, long_token)
    assert len(long_token.to_json()) // 1000 + 1 == 6
    assert _pieces(memory_keyring.entries, service) == ["u", *(f"u#{n}" for n in range(1, 7))]
    store.save(profile, Token("M" * 1500, user="u"))  # two pieces now
    assert _pieces(memory_keyring.entries, service) == ["u", "u#1", "u#2"]
    store.save(profile, Token("short-token", user="u"))  # one entry
    assert _pieces(memory_keyring.entries, service) == ["u"]
    assert KeyringStore(memory_keyring, lock_path=None).load(profile).access_token == "short-token"
    store.save(profile, long_token)
    # The last piece of a longer token, left behind by an earlier version that did not clean up:
    memory_keyring.entries[(service, "u#7")] = "an orphan piece of an old token"
    store.delete(profile)
    assert _pieces(memory_keyring.entries, service) == []
    assert all("L" * 100 not in v and "orphan" not in v for v in memory_keyring.entries.values())


def test_secret_service_keeps_no_old_piece(secret_service_keyring):
    """The real Secret Service, through the magics' store: a 5-piece token replaced by a
    short one, then %logout-style delete: the collection holds no piece of either."""
    from contextlib import closing

    import secretstorage

    store = KeyringStore(secret_service_keyring)
    profile = _profile("http://127.0.0.1:18765")
    store.save(profile, Token("L" * 4500, refresh_token="R" * 500, user="u"))
    store.save(profile, Token("short-token", user="u"))

    def items() -> list[tuple[str, str]]:
        with closing(secretstorage.dbus_init()) as bus:
            collection = secretstorage.get_default_collection(bus)
            return [
                (item.get_attributes().get("username", ""), item.get_secret().decode())
                for item in collection.get_all_items()
                if item.get_attributes().get("service") == profile.keyring_service
            ]

    names = sorted(user for user, _ in items())
    assert names == ["@last-user", "u"], names
    store.delete(profile)
    left = items()
    assert [u for u, _ in left] == ["@last-user"], left
    assert all("L" * 50 not in v and "short-token" not in v for _, v in left)


def _join_keyring_threads() -> None:
    for thread in threading.enumerate():
        if thread.name == "session-magics-keyring":
            thread.join(30)
            assert not thread.is_alive()


def test_a_write_that_finishes_after_logout_does_not_bring_the_token_back(api, new_shell):
    ring = HangingWriteKeyring(passing=("@last-user",))
    keyring.set_keyring(ring)
    shell = new_shell()
    shell.run("%config SessionMagics.keyring_timeout = 0.5")
    run = login(shell, api)
    assert ring.entered.is_set() and "could not be saved" in run.stderr  # timed out: memory only
    assert shell.run("%logout").error is None
    ring.release.set()  # the keyring answers at last: the write lands now
    _join_keyring_threads()
    service = f"session-magics {api.url}"
    assert _pieces(ring.entries, service) == [], ring.entries.keys()
    assert_absent(json.dumps(list(ring.entries.values())), *issued_secrets(api.state))


def test_secret_service_write_that_finishes_after_logout(api, secret_service_keyring, new_shell):
    from keyring.backends import SecretService

    gate, entered = threading.Event(), threading.Event()

    class Gated(SecretService.Keyring):
        viable = False  # out of keyring's own discovery (see tests/keyrings.py)

        def set_password(self, service: str, username: str, password: str) -> None:
            if username != "@last-user":
                entered.set()
                assert gate.wait(30)
            super().set_password(service, username, password)

    keyring.set_keyring(Gated())
    shell = new_shell()
    shell.run("%config SessionMagics.keyring_timeout = 1")
    run = login(shell, api)
    assert entered.is_set() and "could not be saved" in run.stderr
    assert shell.run("%logout").error is None
    gate.set()
    _join_keyring_threads()
    assert secret_service_keyring.get_password(f"session-magics {api.url}", "demo") is None
    restarted = new_shell()
    restarted.run("%config SessionMagics.keyring_timeout = 10")
    os.environ.pop(PASSWORD_ENV, None)
    run = restarted.run(f"%login {api.url} --user demo")
    assert "Already logged in" not in run.stdout, shown(run)


# ==================================== the request path: no frame holding the token either
@pytest.mark.parametrize(
    "cell",
    [
        "%%api --timeout 0.5\nGET /slow?seconds=3",
        "from session_magics import magics\n"
        "await magics.run_async('cell', 'api', '--timeout 0.5', 'GET /slow?seconds=3')",
        "from session_magics import magics\n"
        "magics._instance.session().request('GET', '/me', headers={'X-Note': '€uro'})",
    ],
    ids=["sync-cell", "async-cell", "direct-call"],
)
def test_failed_request_leaves_no_frame_holding_the_token(api, kr, verbose_shell, cell):
    login(verbose_shell, api)
    token = session_of(verbose_shell, api.url).token
    run = verbose_shell.run(cell)
    assert_short_error(run, RequestFailed)
    assert_absent(shown(run), token.access_token)
    assert_no_frame_holds(token.access_token, token.refresh_token, DEMO_PASSWORD)
