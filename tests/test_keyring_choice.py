"""Remembering the keyring backend: a new process skips keyring's discovery only when
nothing it depends on changed, and a note never overrides keyring's configuration or
the safety checks.

Each case runs fresh Python processes against the real Secret Service of the test run
(what a kernel does), and tells discovery from the remembered path by what the process
imported: keyring's discovery imports every installed backend, KWallet's included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.servers import python_json

pytestmark = [pytest.mark.slow, pytest.mark.secretservice]

ROOT = Path(__file__).resolve().parents[1]
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"

CHILD = """
import json, sys
from session_magics.errors import KeyringError
from session_magics.keyring_choice import fingerprint
from session_magics.store import KeyringStore, describe_backend

note, allow = sys.argv[1], sys.argv[2] == "1"
store = KeyringStore(lock_path=None, backend_note=note, allow_plaintext=allow)
try:
    backend = describe_backend(store.backend)
except KeyringError as exc:
    backend = "refused: " + str(exc)
print(json.dumps({
    "backend": backend,
    "discovered": "keyring.backends.kwallet" in sys.modules,
    "fingerprint": fingerprint(allow),
}))
"""


def child(note: Path, cwd: Path, *, allow_plaintext: bool = False, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    environ["PYTHONPATH"] = str(ROOT)
    environ["XDG_CONFIG_HOME"] = str(cwd / "config")  # no keyringrc.cfg
    environ.update(env)
    return dict(python_json(CHILD, str(note), "1" if allow_plaintext else "0", cwd=cwd, env=environ))


@pytest.fixture
def place(tmp_path, secret_service_keyring):
    (tmp_path / "work").mkdir()
    return tmp_path / "note" / "keyring-backend.json", tmp_path / "work"


def test_the_backend_found_is_remembered_and_the_next_process_skips_discovery(place) -> None:
    note, cwd = place
    first = child(note, cwd)
    assert first["backend"] == SECRET_SERVICE and first["discovered"] is True
    saved = json.loads(note.read_text())
    assert saved == {"backend": SECRET_SERVICE, "fingerprint": first["fingerprint"]}
    assert note.stat().st_mode & 0o077 == 0 and note.parent.stat().st_mode & 0o077 == 0

    (cwd / "Untitled.ipynb").write_text("{}")  # the notebook's folder changes: no matter
    second = child(note, cwd)
    assert second == {**first, "discovered": False}


def test_another_bus_or_desktop_means_discovery_again(place) -> None:
    note, cwd = place
    child(note, cwd)
    moved = child(note, cwd, XDG_CURRENT_DESKTOP="KDE")
    assert moved["discovered"] is True and moved["backend"] == SECRET_SERVICE
    assert json.loads(note.read_text())["fingerprint"] == moved["fingerprint"]
    again = child(note, cwd, XDG_CURRENT_DESKTOP="KDE")
    assert again["discovered"] is False


def test_a_package_installed_on_sys_path_means_discovery_again(place, tmp_path) -> None:
    note, cwd = place
    site = tmp_path / "site"
    site.mkdir()
    child(note, cwd, PYTHONPATH=f"{ROOT}{os.pathsep}{site}")
    (site / "some_backend-1.0.dist-info").mkdir()  # what installing a package does to the folder
    after = child(note, cwd, PYTHONPATH=f"{ROOT}{os.pathsep}{site}")
    assert after["discovered"] is True


def test_keyring_configuration_wins_over_the_note(place) -> None:
    note, cwd = place
    assert child(note, cwd, allow_plaintext=True)["backend"] == SECRET_SERVICE
    before = note.read_text()
    configured = "keyrings.alt.file.PlaintextKeyring"
    got = child(note, cwd, allow_plaintext=True, PYTHON_KEYRING_BACKEND=configured)
    assert got["backend"] == configured
    assert note.read_text() == before  # keyring's choice is keyring's: not remembered as ours


@pytest.mark.parametrize(
    "named",
    [
        "collections.OrderedDict",  # importable, not a keyring backend
        "no_such_module.Keyring",
        "keyring.backends.macOS.Keyring",  # a real backend, not usable here
        "",
    ],
)
def test_a_note_naming_something_else_is_not_used(place, named) -> None:
    note, cwd = place
    fingerprint = child(note, cwd)["fingerprint"]
    note.write_text(json.dumps({"backend": named, "fingerprint": fingerprint}))
    got = child(note, cwd)
    assert got["backend"] == SECRET_SERVICE and got["discovered"] is True
    assert json.loads(note.read_text())["backend"] == SECRET_SERVICE  # and it is mended


def test_a_damaged_note_is_replaced(place) -> None:
    note, cwd = place
    note.parent.mkdir(mode=0o700)
    note.write_text("{not json")
    got = child(note, cwd)
    assert got["discovered"] is True and json.loads(note.read_text())["backend"] == SECRET_SERVICE


def test_a_note_cannot_make_a_plaintext_backend_acceptable(place) -> None:
    note, cwd = place
    fingerprint = child(note, cwd)["fingerprint"]
    note.write_text(json.dumps({"backend": "keyrings.alt.file.PlaintextKeyring", "fingerprint": fingerprint}))
    got = child(note, cwd)
    assert str(got["backend"]).startswith("refused: ") and "plaintext" in str(got["backend"])
