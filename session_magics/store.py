"""Token storage: the OS keyring, with timeouts, checks and an in-memory cache.

One keyring entry per profile: service ``session-magics <origin>``, user name the
API user, value a compact JSON of the :class:`~session_magics.tokens.Token`. A
second, non-secret entry (user name ``@last-user``) remembers which user last
logged in at that origin, so ``%login URL`` after a kernel restart finds the
entry without being told the user name.

Rules this module keeps:

* Every keyring call runs in a daemon thread and is bounded by a timeout: a
  keyring waiting for a prompt nobody can see must not hang the kernel.
* Backends that would silently lose or expose secrets are refused with a clear
  error — the fail backend (no recommended backend, e.g. headless Linux), the
  null backend, plaintext file backends — unless plaintext is explicitly allowed.
* Values are read once and cached; :meth:`KeyringStore.load` with ``fresh=True``
  re-reads (after a 401: another kernel may have logged in since).
* The keyring is written only when the value changed (macOS asks again after
  every rewrite), and values too long for some backends (Windows Credential
  Manager takes at most 2560 bytes) are split over several entries.
* A token split over entries leaves no piece behind: a shorter one deletes the pieces
  it no longer uses, a delete removes every piece there is. A call that timed out and
  finishes later is checked against what this store wants the entry to hold now (a
  write landing after ``%logout`` is deleted again).
* Nothing leaving :meth:`KeyringStore.load`, ``save`` or ``delete`` carries a traceback
  into the frames that held a value (see :func:`~session_magics.redact.sealed`); a
  backend's ``SystemExit`` or own ``BaseException`` is a :class:`KeyringError`.
* The backend keyring's discovery chose is remembered for the next process (see
  :mod:`session_magics.keyring_choice`): discovery imports every installed backend.
* Loads, saves and deletes hold a per-user file lock (``filelock``), so two
  kernels never use the keyring at the same moment: a save's chunks, head and
  ``@last-user`` entry land together, and a load never sees half a save. The
  lock also keeps our processes from racing inside the keyring daemon:
  gnome-keyring 42, given two processes writing at once, now and then reports
  its default collection missing (which secretstorage answers by trying to
  create a new one, a prompt) or an item it just wrote missing, and under a
  sustained load of concurrent writes it was seen to abort.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import Interrupted, KeyringError
from .profile import Profile
from .redact import Secret, redact_message, sealed
from .tokens import Token

if TYPE_CHECKING:
    from filelock import BaseFileLock
    from keyring.backend import KeyringBackend

T = TypeVar("T")
LAST_USER = "@last-user"
CHUNK = 1000  # characters per entry: Windows Credential Manager takes 2560 bytes of UTF-16
MAX_CHUNKS = 1000  # a head claiming more is damaged (a token of 1 MB is absurd already)
_MISSING = object()


WRITE_RETRY_DELAYS = (0.05, 0.2, None)  # a write that fails unexpectedly is tried 3 times


def default_lock_path() -> Path:
    """Where the per-user keyring lock lives: ``$XDG_RUNTIME_DIR`` (a private,
    per-user directory) when there is one, else the user's cache directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        base = Path(runtime)
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "session-magics" / "keyring.lock"


class _UnexpectedKeyringFailure(KeyringError):
    """A backend failed with something other than keyring's own errors (possibly a race)."""


class _BackendAborted(KeyringError):
    """A backend raised a BaseException that is not an Exception (SystemExit, say)."""


class TokenStore(Protocol):
    @property
    def description(self) -> str: ...
    def load(self, profile: Profile, *, fresh: bool = False) -> Token | None: ...
    def save(self, profile: Profile, token: Token) -> None: ...
    def delete(self, profile: Profile) -> None: ...
    def last_user(self, profile: Profile, *, fresh: bool = False) -> str | None: ...
    def locked(self, what: str) -> contextlib.AbstractContextManager[None]: ...


class MemoryStore:
    """Keeps tokens for the life of the process only (``--no-keyring``)."""

    @property
    def description(self) -> str:
        return "memory only (lost when the kernel stops)"

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], Token] = {}
        self._last: dict[str, str] = {}

    def load(self, profile: Profile, *, fresh: bool = False) -> Token | None:
        return self._tokens.get((profile.keyring_service, profile.user or ""))

    def save(self, profile: Profile, token: Token) -> None:
        self._tokens[(profile.keyring_service, profile.user or "")] = token
        if profile.user:
            self._last[profile.keyring_service] = profile.user

    def delete(self, profile: Profile) -> None:
        self._tokens.pop((profile.keyring_service, profile.user or ""), None)

    def last_user(self, profile: Profile, *, fresh: bool = False) -> str | None:
        return self._last.get(profile.keyring_service)

    def locked(self, what: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def _call_with_timeout(
    fn: Callable[[], T],
    timeout: float,
    what: str,
    on_late: Callable[[], None] | None = None,
) -> T:
    """``fn()`` in a daemon thread, waited for at most ``timeout`` seconds.

    ``on_late`` runs in that thread if ``fn`` finishes after the caller stopped waiting
    (timed out or interrupted): a keyring write that lands late can be undone there.
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    state = threading.Lock()
    abandoned = False

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            with state:
                late = abandoned
                done.set()
            if late and on_late is not None:
                with contextlib.suppress(Exception):
                    on_late()

    try:  # the thread starts inside: a Ctrl+C landing while it starts is handled below too
        threading.Thread(target=run, name="session-magics-keyring", daemon=True).start()
        answered = done.wait(timeout)
    except KeyboardInterrupt:
        with state:
            abandoned = not done.is_set()
        # The caller's frames hold the value being saved: leave as one line (Interrupted).
        raise Interrupted(f"interrupted while waiting for the OS keyring to {what}") from None
    if not answered:
        with state:
            answered = done.is_set()  # it may have finished just now
            abandoned = not answered
    if not answered:
        raise KeyringError(
            f"the OS keyring did not answer within {timeout:g} s while trying to {what}. "
            "It may be locked and waiting for a password prompt that cannot be shown here. "
            "Unlock it (or see docs/troubleshooting.md), or use --no-keyring "
            "to keep the token in memory for this kernel only."
        )
    if "error" in box:
        error = box.pop("error")
        if isinstance(error, KeyboardInterrupt):
            raise Interrupted(f"interrupted while the OS keyring tried to {what}")
        if not isinstance(error, Exception):
            # SystemExit, GeneratorExit or a backend's own BaseException, raised in our
            # thread: a failure of the backend, not a reason to stop the kernel.
            raise _BackendAborted(f"the OS keyring failed to {what} ({type(error).__name__}: {error})")
        raise error
    return box["value"]  # type: ignore[no-any-return,unused-ignore]


def describe_backend(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def unsafe_backend_reason(backend: KeyringBackend, allow_plaintext: bool = False) -> str | None:
    """Why ``backend`` must not hold tokens, or None if it is fine."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring):
        return (
            "no OS keyring is available (keyring found no recommended backend; usual on "
            "headless Linux, in containers and WSL). Start a Secret Service (e.g. "
            "gnome-keyring; see docs/troubleshooting.md), or use --no-keyring "
            "to keep the token in memory for this kernel only."
        )
    if isinstance(backend, null.Keyring):
        return (
            "the keyring is the null backend, which stores nothing (PYTHON_KEYRING_BACKEND "
            "or keyringrc.cfg chose it). Choose a real backend or use --no-keyring."
        )
    if isinstance(backend, chainer.ChainerBackend):
        for inner in backend.backends:
            reason = unsafe_backend_reason(inner, allow_plaintext)
            if reason:
                return f"one of the chained keyring backends is unsafe: {reason}"
        return None
    if not allow_plaintext:
        cls = type(backend)
        name = cls.__name__.lower()
        if "plaintext" in name or (cls.__module__.startswith("keyrings.alt") and "encrypt" not in name):
            return (
                f"the keyring backend {describe_backend(backend)} keeps secrets in a "
                "plaintext file. Install or start a real OS keyring, use --no-keyring, or "
                "set SessionMagics.allow_plaintext_keyring = True if you accept that."
            )
    return None


def safe_backend(backend: KeyringBackend, allow_plaintext: bool = False) -> KeyringBackend:
    """Unwrap keyring's chainer: use its best *safe* backend alone.

    The chainer tries its backends in turn, so a write the Secret Service refuses
    would silently land in a plaintext file (keyrings.alt). Talking to one safe
    backend directly makes a failure an error instead.
    """
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        for inner in backend.backends:  # highest priority first
            if unsafe_backend_reason(inner, allow_plaintext) is None:
                return inner
    return backend


class KeyringStore:
    """Tokens in the OS keyring (via the ``keyring`` package)."""

    def __init__(
        self,
        backend: KeyringBackend | None = None,
        *,
        timeout: float = 10.0,
        allow_plaintext: bool = False,
        lock_path: str | os.PathLike[str] | None = "",
        backend_note: str | os.PathLike[str] | None = "",
    ) -> None:
        """``lock_path``: the file lock shared with other processes; ``""`` (the
        default) means :func:`default_lock_path`, ``None`` means no lock.
        ``backend_note``: where the backend found is remembered for the next process
        (:mod:`session_magics.keyring_choice`); ``""`` means next to the default lock,
        ``None`` means keyring's discovery every time."""
        self._backend = backend
        if backend_note == "":
            from .keyring_choice import default_note_path

            backend_note = default_note_path()
        self.backend_note = None if backend_note is None else Path(backend_note)
        self.timeout = timeout
        self.allow_plaintext = allow_plaintext
        self.lock_path = default_lock_path() if lock_path == "" else lock_path
        self._file_lock: BaseFileLock | None = None
        # Values are held as Secret (a repr that shows nothing): a debugger or a Verbose
        # traceback that reaches this store shows no token.
        self._cache: dict[tuple[str, str], Secret | None] = {}
        # What this store last asked the keyring to hold for each entry (None: nothing):
        # a call that times out and finishes later is checked against it.
        self._intent: dict[tuple[str, str], Secret | None] = {}
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"OS keyring ({describe_backend(self.backend)})"

    @property
    def backend(self) -> KeyringBackend:
        if self._backend is None:
            from .keyring_choice import choose, remember

            note, allow = self.backend_note, self.allow_plaintext
            found, discovered = _call_with_timeout(
                lambda: choose(note, allow), self.timeout, "find a backend"
            )
            chosen = safe_backend(found, allow)
            if discovered and note is not None and unsafe_backend_reason(chosen, allow) is None:
                remember(note, chosen, allow)
            self._backend = chosen
        reason = unsafe_backend_reason(self._backend, self.allow_plaintext)
        if reason:
            raise KeyringError(reason)
        return self._backend

    # -- the lock shared with other processes
    def locked(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Hold the keyring lock across several steps (a refresh: re-read, POST, save), so
        another kernel never reads or refreshes in between. Reentrant within a thread."""
        return self._exclusive(what)

    @contextlib.contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        """Hold the per-user keyring lock (reentrant within a thread) for ``what``.

        If the lock file cannot be created (a read-only home, say) the keyring is
        used without it: the lock prevents races, it is not a precondition."""
        lock = self._get_file_lock()
        acquired = False
        if lock is not None:
            from filelock import Timeout

            try:
                lock.acquire(timeout=self.timeout)
                acquired = True
            except Timeout:
                raise KeyringError(
                    f"the keyring lock ({self.lock_path}) stayed held for more than "
                    f"{self.timeout:g} s by another kernel (or another thread of this one) "
                    f"using the keyring, so session-magics could not {what}. That kernel may "
                    "be waiting for a keyring prompt: answer it or stop that kernel, and try again."
                ) from None
            except KeyboardInterrupt:
                raise Interrupted(f"interrupted while waiting for the keyring lock to {what}") from None
            except OSError:
                pass  # the lock file cannot be opened: go on without the lock
        try:
            yield
        finally:
            if lock is not None and acquired:
                lock.release()

    def _get_file_lock(self) -> BaseFileLock | None:
        if self.lock_path is None:
            return None
        with self._lock:  # one FileLock object: two would exclude each other in one thread
            if self._file_lock is None:
                from filelock import FileLock

                path = Path(self.lock_path)
                try:
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                except OSError:
                    return None
                self._file_lock = FileLock(path, mode=0o600)
            return self._file_lock

    # -- raw entries
    def _get(self, service: str, user: str, *, fresh: bool) -> str | None:
        key = (service, user)
        with self._lock:
            if not fresh and key in self._cache:
                return _reveal(self._cache[key])
        backend = self.backend
        value = self._guard(lambda: backend.get_password(service, user), "read a token")
        with self._lock:
            self._cache[key] = _hold(value)
        return value

    def _set(self, service: str, user: str, value: str) -> None:
        key = (service, user)
        with self._lock:
            self._intent[key] = Secret(value)
            unchanged = key in self._cache and _reveal(self._cache[key]) == value
        if unchanged:
            return  # unchanged: do not rewrite (macOS re-prompts after every write)
        backend = self.backend
        for delay in WRITE_RETRY_DELAYS:
            try:
                self._guard(
                    lambda: backend.set_password(service, user, value),
                    "save a token",
                    secret=value,
                    on_late=lambda: self._settle_late(key, value),
                )
                break
            except _UnexpectedKeyringFailure:
                if delay is None:
                    raise
                # Two processes writing the same entry at once can trip the Secret Service
                # (secretstorage's ItemNotFoundException while the other replaces the item).
                time.sleep(delay)
        with self._lock:
            self._cache[key] = Secret(value)

    def _delete(self, service: str, user: str) -> None:
        import keyring.errors

        key = (service, user)
        with self._lock:
            self._intent[key] = None
        backend = self.backend

        def delete() -> None:
            with contextlib.suppress(keyring.errors.PasswordDeleteError):  # nothing stored: fine
                backend.delete_password(service, user)

        self._guard(delete, "delete a token", on_late=lambda: self._settle_late(key, None))
        with self._lock:
            # Not "None": after a logout the next read asks the keyring, where another
            # kernel may have stored a new login meanwhile.
            self._cache.pop(key, None)

    def _settle_late(self, key: tuple[str, str], done: str | None) -> None:
        """A keyring call we stopped waiting for has finished now (``done``: the value it
        wrote, None for a delete). If this store meant something else for the entry since
        (``%logout`` deleted it, a newer token replaced it), put that back: a write that
        lands late must not bring back a token after ``%logout``. Runs in the call's thread."""
        import keyring.errors

        service, user = key
        backend = self._backend
        with self._lock:
            wanted = _reveal(self._intent.get(key, _hold(done)))
            self._cache.pop(key, None)  # unknown now: read again next time
        if wanted == done or backend is None:
            return
        lock = self._get_file_lock()
        try:
            if lock is not None:
                lock.acquire(timeout=max(self.timeout, 1.0))
        except Exception:
            lock = None  # without the lock, rather than not at all
        try:
            with self._lock:
                wanted = _reveal(self._intent.get(key, _hold(done)))  # may have changed meanwhile
            if wanted is None:
                with contextlib.suppress(keyring.errors.PasswordDeleteError):
                    backend.delete_password(service, user)
            elif wanted != done:
                backend.set_password(service, user, wanted)
        finally:
            if lock is not None:
                lock.release()

    def _guard(
        self,
        fn: Callable[[], T],
        what: str,
        *,
        secret: str | None = None,
        on_late: Callable[[], None] | None = None,
    ) -> T:
        """Run a keyring call; any failure becomes a KeyringError whose message never
        holds ``secret`` (the value being written: some backends quote it). The error is
        raised with no exception chained to it (the backend's frames hold the value)."""
        failure: BaseException | None = None
        try:
            return self._guard_call(fn, what, on_late)
        except KeyringError as exc:
            text = str(exc)
            hidden = redact_message(text, secret) if secret else text
            failure = exc if hidden == text else type(exc)(hidden)
        assert failure is not None
        failure.__context__ = failure.__cause__ = None
        failure.__traceback__ = None
        raise failure

    def _guard_call(self, fn: Callable[[], T], what: str, on_late: Callable[[], None] | None = None) -> T:
        import keyring.errors

        try:
            return _call_with_timeout(fn, self.timeout, what, on_late)
        except KeyringError:
            raise
        except keyring.errors.KeyringLocked:
            raise KeyringError(
                f"the OS keyring is locked, so session-magics could not {what}. "
                "Unlock it (log in to the desktop, or `gnome-keyring-daemon --unlock`) "
                "and try again, or use --no-keyring."
            ) from None
        except keyring.errors.NoKeyringError:
            reason = unsafe_backend_reason(self._backend) if self._backend is not None else None
            raise KeyringError(reason or "no keyring") from None
        except keyring.errors.InitError as exc:
            raise KeyringError(f"the OS keyring could not be opened to {what}: {exc}") from None
        except keyring.errors.KeyringError as exc:
            raise KeyringError(f"the OS keyring refused to {what} ({type(exc).__name__}: {exc})") from None
        except Exception as exc:
            raise _UnexpectedKeyringFailure(
                f"the OS keyring failed to {what} ({type(exc).__name__}: {exc})"
            ) from None

    # -- tokens
    @sealed()
    def load(self, profile: Profile, *, fresh: bool = False) -> Token | None:
        with self._exclusive("read a token"):
            return self._load(profile, fresh=fresh)

    def _load(self, profile: Profile, *, fresh: bool) -> Token | None:
        user = profile.user or self.last_user(profile, fresh=fresh)
        if not user:
            return None
        service = profile.keyring_service
        value = self._get(service, user, fresh=fresh)
        if value is None:
            return None
        try:
            chunks = _chunk_count(value)
            if chunks:
                parts = [self._get(service, f"{user}#{n}", fresh=fresh) or "" for n in range(1, chunks + 1)]
                value = "".join(parts)
            token = Token.from_json(value)
        except (ValueError, TypeError, KeyError, RecursionError):
            value = None
            raise KeyringError(
                f"the keyring entry for {user} at {profile.origin_text} is damaged; "
                "run %logout and %login again"
            ) from None
        return token if token.user else token.replace(user=user)

    @sealed(lambda self, profile, token: (token.access_token, token.refresh_token))
    def save(self, profile: Profile, token: Token) -> None:
        user = profile.user or token.user
        if not user:
            raise KeyringError("cannot save a token without a user name")
        service = profile.keyring_service
        value = token.to_json()
        with self._exclusive("save a token"):
            self._save(service, user, value)

    def _save(self, service: str, user: str, value: str) -> None:
        with self._lock:
            known = (service, user) in self._cache
        try:
            old = _chunk_count(self._get(service, user, fresh=not known))
        except ValueError:
            old = 0
        if len(value) <= CHUNK:
            new = 0
            self._set(service, user, value)
        else:
            parts = [value[i : i + CHUNK] for i in range(0, len(value), CHUNK)]
            new = len(parts)
            for n, part in enumerate(parts, 1):
                self._set(service, f"{user}#{n}", part)
            self._set(service, user, json.dumps({"chunks": new}))
        self._set(service, LAST_USER, user)
        # A shorter token than the last one: the pieces it no longer uses go.
        self._drop_chunks(service, user, keep=new, known=old, probe=False)  # keyring calls only if needed

    def _drop_chunks(self, service: str, user: str, *, keep: int, known: int, probe: bool = True) -> None:
        """Delete the entries ``user#N`` for N > ``keep``: those up to ``known`` (a head
        said so), with ``probe`` any further ones that exist (left by an interrupted save
        or an earlier version: one more read), and any this store wrote or is still
        writing (a call that timed out)."""
        for n in range(keep + 1, known + 1):
            self._delete(service, f"{user}#{n}")
        n = max(keep, known) + 1
        while probe and n <= MAX_CHUNKS and self._get(service, f"{user}#{n}", fresh=True) is not None:
            self._delete(service, f"{user}#{n}")
            n += 1
        with self._lock:
            pending = [
                u
                for (svc, u), want in self._intent.items()
                if svc == service and want is not None and _chunk_number(u, user) > keep
            ]
        for name in pending:
            self._delete(service, name)

    @sealed()
    def delete(self, profile: Profile) -> None:
        with self._exclusive("delete a token"):
            self._remove(profile)

    def _remove(self, profile: Profile) -> None:
        user = profile.user or self.last_user(profile)
        if not user:
            return
        service = profile.keyring_service
        try:
            chunks = _chunk_count(self._get(service, user, fresh=True))
        except ValueError:
            chunks = 0
        self._delete(service, user)
        self._drop_chunks(service, user, keep=0, known=chunks)

    def last_user(self, profile: Profile, *, fresh: bool = False) -> str | None:
        with self._exclusive("read a token"):
            return self._get(profile.keyring_service, LAST_USER, fresh=fresh)

    def secret(self, service: str, user: str) -> str | None:
        """Another secret kept in the keyring by the user (an OAuth client secret), or None."""
        with self._exclusive("read a client secret"):
            return self._get(service, user, fresh=True)  # it may have been stored since


def _chunk_count(value: str | None) -> int:
    """How many ``user#N`` entries a head entry points to (0: the value is the token).
    ValueError when it claims an absurd number."""
    if not value or not value.startswith('{"chunks"'):
        return 0
    head = json.loads(value)
    chunks = head.get("chunks") if isinstance(head, dict) else None
    if isinstance(chunks, bool) or not isinstance(chunks, int) or not 0 < chunks <= MAX_CHUNKS:
        raise ValueError("not a chunk count")
    return chunks


def _chunk_number(name: str, user: str) -> int:
    """N for the entry name ``user#N``, else 0."""
    prefix = f"{user}#"
    if name.startswith(prefix) and name[len(prefix) :].isdigit() and name[len(prefix) :].isascii():
        return int(name[len(prefix) :])
    return 0


def _hold(value: str | None) -> Secret | None:
    return None if value is None else Secret(value)


def _reveal(held: Secret | None) -> str | None:
    return None if held is None else held.reveal()
