"""The product's promise, in a real JupyterLab (and Notebook 7 where said) on both kernel
lines (ipykernel 6.29 and 7.4):

* a fresh kernel with an empty keyring: Run All stops at %login's form; after logging in
  the cells below run, logged in (JupyterLab and Notebook 7);
* both tokens expired: Run All shows the form in the %%api cell; after logging in that cell
  shows its data and the next cell runs with the result;
* the tokens expire in the middle of Run All (after a request that worked): the form comes
  up in place in the next %%api cell, the password is typed into the page and Run All
  resumes and completes (JupyterLab and Notebook 7);
* Cancel ends the cell with one line, the error LoginCancelled (a SessionExpired), and Run
  All stops there;
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
import socket

import pytest

from session_magics.demo import DemoServer
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import KeyringStore
from tests.e2e.harness import FORM, FRONTENDS, ROOT, NotebookPage

IMAGES = ROOT / "docs" / "images"


@pytest.fixture
def api(secret_service_keyring):
    with DemoServer(password="pw-" + secrets.token_hex(6)) as server:
        yield server


def keep_for_readme(shot, name: str, kernel: str, frontend: str = "lab") -> None:
    """With SESSION_MAGICS_UPDATE_IMAGES=1, the README's pictures are refreshed from this run
    (JupyterLab on ipykernel 7)."""
    if (
        os.environ.get("SESSION_MAGICS_UPDATE_IMAGES") == "1"
        and kernel == "sm-k7"
        and frontend == "lab"
        and shot.exists()
    ):
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, IMAGES / name)


def readme_name(kernel: str, frontend: str = "lab") -> str | None:
    """The notebook's name where a run may refresh the README's pictures: the one a user
    has after `make demo` (quickstart.ipynb), not a test's name; else None (named after
    the test)."""
    return "quickstart" if kernel == "sm-k7" and frontend == "lab" else None


def readme_view(nb: NotebookPage) -> None:
    """For the README's pictures: the file browser folded away (it lists the notebooks of
    the other tests), as a click on its tab does."""
    if nb.name != "quickstart.ipynb":
        return
    nb.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
    nb.page.wait_for_function("() => !document.querySelector('.jp-SideBar.jp-mod-left .lm-mod-current')")


def setup_cell(api) -> str:
    return f'%load_ext session_magics\nAPI = "{api.url}"'


def stored_login(api, backend) -> None:
    """Log in from outside the kernel, as an earlier kernel would have."""
    session = ApiSession(Profile(name="x", base_url=api.url, user="demo"), KeyringStore(backend))
    session.login("demo", api.config.password)


def assert_waiting(nb: NotebookPage, cell: int, later: int) -> None:
    """The form is up in ``cell``, which still runs; the cells from ``later`` on are
    queued (Run All sent them before the form came up) and have not run."""
    nb.login_form()
    prompts = nb.prompts()
    assert prompts[cell] == "[*]:", prompts
    assert all(p == "[*]:" for p in prompts[later:]), prompts
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


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_fresh_kernel_run_all_stops_at_login_form(notebook, kernel, frontend, api) -> None:
    nb = notebook(
        [
            setup_cell(api),
            "%login {{API}} --user demo",
            'me = %api GET /me\nprint("NEXT", me.data["username"])',
        ],
        kernel,
        readme_name(kernel, frontend),
    )
    nb.run_all()
    assert_waiting(nb, 1, 2)
    form_text = nb.login_form().inner_text()
    assert "Log in to" in form_text and api.url in form_text
    readme_view(nb)
    nb.fill_login(api.config.password)  # the user name is filled in from --user
    keep_for_readme(nb.screenshot(f"login-form-{frontend}-{kernel}"), "login-form.png", kernel, frontend)
    nb.click("Log in")
    nb.wait_for_output(1, "Logged in as demo")
    nb.wait_for_output(2, "NEXT demo")
    nb.screenshot(f"login-done-{frontend}-{kernel}")
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
        readme_name(kernel),
    )
    nb.run_all()
    nb.wait_for_output(1, "Already logged in as demo")
    assert_waiting(nb, 2, 3)
    form_text = nb.login_form().inner_text()
    assert "Session expired for demo at" in form_text
    readme_view(nb)
    nb.fill_login(api.config.password)
    shot = nb.screenshot(f"expired-form-{kernel}")
    nb.click("Log in")
    nb.wait_for_output(2, r"200 OK[\s\S]*Adelie")  # the summary line, then the table
    nb.wait_for_output(3, "NEXT 200 5")
    done = nb.screenshot(f"expired-done-{kernel}")
    stats = api.stats()
    assert stats["refresh_failures"] == 1  # silent renewal was tried first
    assert stats["password_grants"] == 1
    leak_check(api, nb)
    keep_for_readme(shot, "expired-form.png", kernel)
    keep_for_readme(done, "expired-done.png", kernel)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_tokens_expire_in_the_middle_of_run_all(notebook, kernel, frontend, api, secret_service_keyring):
    """A request works, then both tokens expire (the server's clock moves on while a
    cell waits for the test's signal on a socket): the next %%api cell shows the form
    in place, the cells below wait, and after the password is typed into the page Run
    All resumes and completes."""
    stored_login(api, secret_service_keyring)
    signal = socket.create_server(("127.0.0.1", 0))
    signal.settimeout(60)  # the cell connects when Run All reaches it
    wait_for_signal = (
        f"import socket\nwith socket.create_connection(('127.0.0.1', {signal.getsockname()[1]})) as s:\n"
        "    s.recv(1)\nprint('CLOCK MOVED')"
    )
    nb = notebook(
        [
            setup_cell(api),
            "%login {{API}}",
            "%%api -o first\nGET /me",
            wait_for_signal,
            "%%api -o penguins\nGET /penguins?per_page=5",
            'print("NEXT", first.status_code, penguins.status_code, len(penguins.df))',
        ],
        kernel,
    )
    nb.run_all()
    nb.wait_for_output(1, "Already logged in as demo")
    nb.wait_for_output(2, "200 OK")
    assert nb.page.locator(FORM).count() == 0
    api.reset_stats()
    api.advance_clock(100_000)  # access and refresh tokens both expired on the server
    with signal, signal.accept()[0] as conn:  # the cell is connected and waits
        conn.sendall(b"!")
    nb.wait_for_output(3, "CLOCK MOVED")
    assert_waiting(nb, 4, 5)
    assert "Session expired for demo at" in nb.login_form().inner_text()
    nb.fill_login(api.config.password)
    nb.screenshot(f"mid-run-form-{frontend}-{kernel}")
    nb.click("Log in")
    nb.wait_for_output(4, r"200 OK[\s\S]*Adelie")  # the summary line, then the table
    nb.wait_for_output(5, "NEXT 200 200 5")
    outs = nb.wait_all_ran()
    assert nb.page.locator(FORM).count() == 0
    assert api.config.password not in "".join(outs)
    stats = api.stats()
    assert stats["refresh_failures"] == 1  # silent renewal was tried first
    assert stats["password_grants"] == 1
    nb.screenshot(f"mid-run-done-{frontend}-{kernel}")
    leak_check(api, nb)


def test_cancel_ends_the_cell_with_one_line(notebook, kernel, api, secret_service_keyring) -> None:
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
    out = nb.wait_for_output(2, "LoginCancelled")
    nb.page.wait_for_function(f"() => document.querySelectorAll('{FORM}').length === 0")
    # one line says it: the error (a SessionExpired), not the form's line as well
    lines = [line for line in nb.outputs()[2].splitlines() if line.strip()]
    said = f"LoginCancelled: demo at {api.url} is not logged in (run the cell again to log in)."
    assert lines == [said], out
    nb.wait_for_prompt(2, r"\[\d+\]:")
    nb.wait_for_prompt(3, r"^\[ \]:$")  # Run All stopped at the error: the queued cell was aborted
    nb.wait_idle()
    assert "NEXT" not in nb.outputs()[3]
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
