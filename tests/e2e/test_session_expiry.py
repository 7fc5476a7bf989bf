"""The product's promise, in a real JupyterLab on both kernel lines (ipykernel 6.29 and 7.4):

* a fresh kernel with an empty keyring: Run All stops at %login's form; after logging in
  the cells below run, logged in;
* both tokens expired: Run All shows the form in the %%api cell; after logging in that cell
  shows its data and the next cell runs with the result;
* Cancel ends the cell with SessionExpired and Run All stops there;
* with widget state saving on, the saved .ipynb (and its checkpoint) holds no password
  and no token.

The kernels use the real Secret Service of the test run (scripts/with-secret-service.sh).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil

import pytest

from session_magics.demo import DemoServer
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import KeyringStore
from tests.e2e.harness import ROOT, NotebookPage

IMAGES = ROOT / "docs" / "images"


@pytest.fixture
def api(secret_service_keyring):
    with DemoServer(password="pw-" + secrets.token_hex(6)) as server:
        yield server


def keep_for_readme(shot, name: str, kernel: str) -> None:
    """With SESSION_MAGICS_UPDATE_IMAGES=1, the README's pictures are refreshed from this run."""
    if os.environ.get("SESSION_MAGICS_UPDATE_IMAGES") == "1" and kernel == "sm-k7" and shot.exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, IMAGES / name)


def setup_cell(api) -> str:
    return f'%load_ext session_magics\nAPI = "{api.url}"'


def stored_login(api, backend) -> None:
    """Log in from outside the kernel, as an earlier kernel would have."""
    session = ApiSession(Profile(name="x", base_url=api.url, user="demo"), KeyringStore(backend))
    session.login("demo", api.config.password)


def assert_waiting(nb: NotebookPage, cell: int, later: int) -> None:
    nb.login_form()
    prompts = nb.prompts()
    assert prompts[cell] == "[*]:", prompts
    assert "NEXT" not in nb.outputs()[later]


def leak_check(api, nb: NotebookPage) -> None:
    saved = json.dumps(nb.save())
    texts = [saved]
    checkpoints = nb.lab.notebooks / ".ipynb_checkpoints"
    if checkpoints.exists():
        texts += [p.read_text() for p in checkpoints.glob("*.ipynb")]
    issued = api.state.issued_secrets()
    assert issued, "the demo API issued no token?"
    for text in texts:
        assert api.config.password not in text
        for secret in issued:
            assert secret not in text
    assert '"saveState"' not in saved  # sanity: this is the notebook, not the settings
    assert "application/vnd.jupyter.widget-state+json" in saved  # widget state was saved


def test_fresh_kernel_run_all_stops_at_login_form(notebook, kernel, api) -> None:
    nb = notebook(
        [
            setup_cell(api),
            "%login {{API}} --user demo",
            'me = %api GET /me\nprint("NEXT", me.data["username"])',
        ],
        kernel,
    )
    nb.run_all()
    assert_waiting(nb, 1, 2)
    form_text = nb.login_form().inner_text()
    assert "Log in to" in form_text and api.url in form_text
    nb.page.wait_for_timeout(300)
    nb.fill_login(api.config.password)  # the user name is filled in from --user
    keep_for_readme(nb.screenshot(f"login-form-{kernel}"), "login-form.png", kernel)
    nb.click("Log in")
    nb.wait_for_output(1, "Logged in as demo")
    nb.wait_for_output(2, "NEXT demo")
    nb.screenshot(f"login-done-{kernel}")
    leak_check(api, nb)


def test_expired_session_form_in_the_running_cell(notebook, kernel, api, secret_service_keyring) -> None:
    stored_login(api, secret_service_keyring)
    api.advance_clock(100_000)  # access and refresh tokens both expired on the server
    api.reset_stats()
    nb = notebook(
        [
            setup_cell(api),
            "%login {{API}}",
            "%%api -o penguins\nGET /penguins?per_page=5",
            'print("NEXT", penguins.status_code, len(penguins.df))',
        ],
        kernel,
    )
    nb.run_all()
    nb.wait_for_output(1, "Already logged in as demo")
    assert_waiting(nb, 2, 3)
    form_text = nb.login_form().inner_text()
    assert "Session expired for demo at" in form_text
    nb.page.wait_for_timeout(300)
    nb.fill_login(api.config.password)
    shot = nb.screenshot(f"expired-form-{kernel}")
    nb.click("Log in")
    out = nb.wait_for_output(2, "200 OK")
    assert "Adelie" in out
    nb.wait_for_output(3, "NEXT 200 5")
    done = nb.screenshot(f"expired-done-{kernel}")
    stats = api.stats()
    assert stats["refresh_failures"] == 1  # silent renewal was tried first
    assert stats["password_grants"] == 1
    leak_check(api, nb)
    keep_for_readme(shot, "expired-form.png", kernel)
    keep_for_readme(done, "expired-done.png", kernel)


def test_cancel_ends_the_cell_with_session_expired(notebook, kernel, api, secret_service_keyring) -> None:
    stored_login(api, secret_service_keyring)
    api.advance_clock(100_000)
    nb = notebook(
        [
            setup_cell(api),
            "%login {{API}}",
            "%%api -o me\nGET /me",
            'print("NEXT", me)',
        ],
        kernel,
    )
    nb.run_all()
    assert_waiting(nb, 2, 3)
    nb.fill_login("typed-but-cancelled")
    nb.click("Cancel")
    out = nb.wait_for_output(2, "SessionExpired")
    assert "Login cancelled" in out
    assert "Traceback" not in out
    nb.wait_for_prompt(2, r"\[\d+\]:")
    nb.page.wait_for_timeout(1000)
    assert "NEXT" not in nb.outputs()[3]  # Run All stopped at the error
    assert not re.fullmatch(r"\[\d+\]:", nb.prompts()[3]), nb.prompts()  # never executed
    assert "typed-but-cancelled" not in json.dumps(nb.save())


def test_wrong_password_keeps_form_open(notebook, kernel, api) -> None:
    """Also: every keystroke of the user name and a second password reach the kernel
    (ipywidgets sends one update per widget until the kernel reports idle)."""
    nb = notebook([setup_cell(api), "%login {{API}}", 'print("NEXT")'], kernel)
    nb.run_all()
    assert_waiting(nb, 1, 2)
    nb.login_form().locator("input[type=text]").first.press_sequentially("demo", delay=30)
    nb.fill_login("not-the-password")
    nb.click("Log in")
    form = nb.login_form()
    nb.page.wait_for_function(
        "() => document.querySelector('.session-magics-login').innerText.includes('invalid_grant')"
    )
    assert "not-the-password" not in form.inner_text()
    assert nb.prompts()[1] == "[*]:"
    nb.fill_login(api.config.password)
    nb.click("Log in")
    nb.wait_for_output(1, "Logged in as demo")
    nb.wait_for_output(2, "NEXT")
