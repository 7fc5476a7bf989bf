"""Which keyring backend to use, without keyring's full discovery when nothing changed.

With no configuration, ``keyring.get_keyring()`` imports every installed backend and
asks each for its priority (the Secret Service's asks D-Bus): 70–100 ms on the machine
docs/performance.md was measured on, the largest part of what the first result of a
fresh kernel costs beyond its imports. So the
backend session-magics ends up using is remembered in a small note next to the
keyring lock (``$XDG_RUNTIME_DIR/session-magics/keyring-backend.json``, or the user's
cache folder): the backend's class and a *fingerprint* of what discovery depends on.
A new process whose fingerprint matches loads that one class with keyring's own
``keyring.core.load_keyring`` (which checks that the backend is still usable: its
priority) instead of discovering.

Everything else is keyring's own choice, remembered anew afterwards:

* keyring is configured: ``PYTHON_KEYRING_BACKEND``, a ``keyringrc.cfg``, or a backend
  already chosen in this process (``keyring.set_keyring``, or a ``keyring`` call made
  by the notebook before the first login);
* the fingerprint differs: another Python, a package installed or removed (the
  modification times of the ``sys.path`` folders change), another D-Bus session bus
  or desktop (the environment variables backends decide on), or a different
  ``allow_plaintext_keyring``;
* the note is missing, unreadable, or names something that is not a usable keyring
  backend.

The note holds no secret. A remembered backend passes the same safety checks as a
discovered one (:func:`session_magics.store.unsafe_backend_reason`): a note cannot
make a plaintext backend acceptable. The note lives in the user's private runtime (or
cache) folder, which a cloned repository's files cannot name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

#: Environment variables keyring's backends look at when they work out their priority.
ENV_KEYS = (
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_TYPE",
    "KDE_FULL_SESSION",
    "DISPLAY",
    "WAYLAND_DISPLAY",
)


def default_note_path() -> Path:
    from .store import default_lock_path

    return default_lock_path().with_name("keyring-backend.json")


def fingerprint(allow_plaintext: bool) -> str:
    """What keyring's discovery depends on, hashed. The current folder (``""`` on
    ``sys.path`` of a kernel) is left out: a notebook's folder changes at every save."""
    here = os.getcwd()
    parts = [sys.executable, sys.version, f"allow_plaintext={allow_plaintext}"]
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        try:
            parts.append(f"{entry}\0{os.stat(entry).st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    parts += [f"{key}={os.environ.get(key, '')}" for key in ENV_KEYS]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def keyring_configured() -> bool:
    """Whether keyring's own configuration (or this process) has chosen a backend."""
    import keyring.core

    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return True
    # keyring keeps the backend chosen in this process here; get_keyring() returns it.
    if getattr(keyring.core, "_keyring_backend", None) is not None:
        return True
    try:
        return keyring.core.load_config() is not None
    except Exception:
        return True  # a config file keyring cannot read: let keyring say so


def remembered(note: Path, allow_plaintext: bool) -> KeyringBackend | None:
    """The backend the note names, when its fingerprint matches and it is still usable."""
    import keyring.core
    from keyring.backend import KeyringBackend

    try:
        data = json.loads(note.read_text(encoding="utf-8"))
        if data.get("fingerprint") != fingerprint(allow_plaintext):
            return None
        name = data["backend"]
        if not isinstance(name, str) or "." not in name:
            return None
        backend = keyring.core.load_keyring(name)  # raises when it is no longer usable
    except Exception:
        return None
    return backend if isinstance(backend, KeyringBackend) else None


def remember(note: Path, backend: KeyringBackend, allow_plaintext: bool) -> None:
    """Write the note (atomically, private to the user); a failure only costs speed."""
    import tempfile

    cls = type(backend)
    data = {"backend": f"{cls.__module__}.{cls.__qualname__}", "fingerprint": fingerprint(allow_plaintext)}
    with contextlib.suppress(OSError):
        note.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keyring-backend-", dir=note.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.replace(tmp, note)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def choose(note: Path | None, allow_plaintext: bool) -> tuple[KeyringBackend, bool]:
    """The backend to use before the safety checks: the remembered one when it may be
    used, else keyring's own choice. Returns ``(backend, discovered)``; ``discovered``
    says that keyring's discovery ran, so its result (once made safe) may be remembered."""
    import keyring

    if note is not None and not keyring_configured():
        found = remembered(note, allow_plaintext)
        if found is not None:
            return found, False
        return keyring.get_keyring(), True
    return keyring.get_keyring(), False
