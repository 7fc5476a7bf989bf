"""The real login form (%login) where waiting is hardest, in a real JupyterLab on both
kernel lines (ipykernel 6.29 and 7.4):

* ipykernel 7 with comm messages over subshells turned off (every widget message
  reaches the main shell, which runs the waiting cell), from a cell and from inside
  a function (the synchronous wait);
* the kernel interrupted while the form waits: the cell stops with one line, the form
  is closed, the queued cells are not run;
* two forms in one Run All (two APIs): each comes up when its cell runs;
* nobody answers: the form gives up after ``login_timeout`` and Run All stops there;
* the notebook saved while the form waits (widget state saving on) holds no password.

The stand-in form of tests/e2e/toy.py tests the waiting machinery alone
(test_wait_widgets.py); these tests go through the magics, the real form and a real
login against the demo API. The kernels use the real Secret Service of the test run.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from session_magics.demo import DemoServer
from tests.e2e import toy
from tests.e2e.harness import FORM, NotebookPage

KERNELS_SETTINGS = "@jupyterlab/apputils-extension:kernels-settings"


def _demo() -> DemoServer:
    return DemoServer(password="pw-" + secrets.token_hex(6))


@pytest.fixture
def api(secret_service_keyring):
    with _demo() as server:
        yield server


def setup_cell(*apis: Any) -> str:
    names = "\n".join(f'API{i or ""} = "{a.url}"' for i, a in enumerate(apis))
    return f"%load_ext session_magics\n{names}"


def assert_waiting(nb: NotebookPage, cell: int) -> None:
    """The form is up in ``cell``, which still runs; the cells below are queued."""
    nb.login_form()
    prompts = nb.prompts()
    assert prompts[cell] == "[*]:", prompts
    assert all(p == "[*]:" for p in prompts[cell + 1 :]), prompts
    assert "NEXT" not in "".join(nb.outputs()[cell + 1 :])


def assert_run_all_stopped_at(nb: NotebookPage, cell: int) -> None:
    """``cell`` ended (an execution count) and every cell below was aborted, never run."""
    nb.wait_for_prompt(cell, r"^\[\d+\]:$")
    for below in range(cell + 1, len(nb.prompts())):
        nb.wait_for_prompt(below, r"^\[ \]:$")
    nb.wait_idle()
    assert "NEXT" not in "".join(nb.outputs()[cell + 1 :])


LOGIN_IN_FUNCTION = """\
def log_in():
    # Inside a function no cell rewriting applies: the magic waits synchronously.
    get_ipython().run_line_magic("login", API)
log_in()
"""


@pytest.mark.parametrize("where", ["cell", "function"])
def test_k7_with_comms_over_subshells_disabled(notebook, lab, api, where: str) -> None:
    lab.set_setting(KERNELS_SETTINGS, {"commsOverSubshells": "disabled"})
    try:
        login = "%login {{API}}" if where == "cell" else LOGIN_IN_FUNCTION
        cells = [setup_cell(api), login, 'me = %api GET /me\nprint("NEXT", me.status_code)', toy.SUBSHELLS]
        nb = notebook(cells, "sm-k7")
        nb.run_all()
        assert_waiting(nb, 1)
        nb.login_form().locator("input[type=text]").first.press_sequentially("demo", delay=30)
        nb.fill_login(api.config.password)
        nb.click("Log in")
        nb.wait_for_output(1, "Logged in as demo")
        nb.wait_for_output(2, "NEXT 200")
        assert "SUBSHELLS 0" in nb.wait_for_output(3, "SUBSHELLS")
        assert api.stats()["password_grants"] == 1
    finally:
        lab.set_setting(KERNELS_SETTINGS, {})


def test_interrupt_while_the_form_waits(notebook, kernel, api) -> None:
    nb = notebook([setup_cell(api), "%login {{API}} --user demo", 'print("NEXT")'], kernel)
    nb.run_all()
    assert_waiting(nb, 1)
    nb.fill_login("typed-then-interrupted")
    nb.interrupt()
    # Both kernels: KeyboardInterrupt as one line, no traceback (ipykernel 7.4 awaits the
    # form: the cancellation it makes of the interrupt becomes KeyboardInterrupt).
    out = nb.wait_for_output(1, "KeyboardInterrupt: %login interrupted while the login form waited")
    assert "CancelledError" not in out and "Traceback" not in out and "asyncio" not in out
    # The form leaves no line of its own: the error line is the one line.
    assert "Login interrupted" not in out and nb.page.locator(FORM).count() == 0
    assert "typed-then-interrupted" not in out
    assert_run_all_stopped_at(nb, 1)
    assert api.stats()["password_grants"] == 0 and api.stats()["login_failures"] == 0
    assert "typed-then-interrupted" not in json.dumps(nb.save())


def test_two_forms_in_one_run(notebook, kernel, api) -> None:
    """Two APIs, neither logged in: Run All brings up the first form alone; after that
    login the second comes up in its own cell, and then the rest runs."""
    with _demo() as other:
        cells = [
            setup_cell(api, other),
            "%login {{API}} --user demo",
            "%login {{API1}} --user demo",
            'print("NEXT")',
        ]
        nb = notebook(cells, kernel)
        nb.run_all()
        assert_waiting(nb, 1)
        assert nb.page.locator(FORM).count() == 1
        assert api.url in nb.login_form().inner_text()
        nb.fill_login(api.config.password)
        nb.click("Log in")
        nb.wait_for_output(1, "Logged in as demo")
        nb.wait_for_output(2, "Log in to")  # the second form, in its own cell
        assert_waiting(nb, 2)
        form = nb.login_form()
        assert other.url in form.inner_text() and nb.page.locator(FORM).count() == 1
        nb.fill_login(other.config.password)
        nb.click("Log in")
        nb.wait_for_output(2, "Logged in as demo")
        nb.wait_for_output(3, "NEXT")
        assert api.stats()["password_grants"] == 1 and other.stats()["password_grants"] == 1


def test_nobody_answers_the_form_gives_up_and_run_all_stops(notebook, kernel, api) -> None:
    cells = [
        setup_cell(api) + "\n%config SessionMagics.login_timeout = 3",
        "%login {{API}} --user demo",
        'print("NEXT")',
    ]
    nb = notebook(cells, kernel)
    nb.run_all()
    assert_waiting(nb, 1)
    out = nb.wait_for_output(1, "SessionExpired", timeout=60)
    assert_run_all_stopped_at(nb, 1)
    assert nb.page.locator(FORM).count() == 0  # the form is gone: the error is its one line
    lines = [line for line in nb.outputs()[1].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("SessionExpired: No login within 3 s for demo at"), out
    assert api.stats()["password_grants"] == 0


def test_notebook_saved_while_the_form_waits_holds_no_password(notebook, kernel, api) -> None:
    """Widget state is saved into the notebook (saveState): the typed password is in
    the file neither while the form waits (the kernel took it out of the widget) nor
    after the login."""
    nb = notebook([setup_cell(api), "%login {{API}} --user demo", 'print("NEXT")'], kernel)
    nb.run_all()
    assert_waiting(nb, 1)
    nb.fill_login(api.config.password)  # returns once the kernel took the value
    while_waiting = json.dumps(nb.save())
    assert "application/vnd.jupyter.widget-state+json" in while_waiting  # saveState is on
    assert "session-magics-login" in while_waiting  # the waiting form's widgets were saved
    assert api.config.password not in while_waiting
    nb.click("Log in")
    nb.wait_for_output(2, "NEXT")
    after = json.dumps(nb.save())
    assert api.config.password not in after
    issued = api.state.issued_secrets()
    assert issued and not any(secret in after for secret in issued)
