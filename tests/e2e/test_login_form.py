"""The real login form (%login) in a real JupyterLab (and Notebook 7 where said), on
both kernel lines, with the frontends' defaults (on ipykernel 7: comm messages over subshells):

* the kernel reads busy from the moment the form appears until the cell ends, in
  the page (JupyterLab's status bar and toolbar indicator; Notebook 7's toolbar
  indicator and favicon) and in Jupyter Server's /api/sessions (what an
  idle-kernel culler acts on), before and after the form is touched;
* Enter in the Password field logs in, and the keyboard is back in the notebook
  afterwards (Shift+Enter runs a cell);
* a finished form becomes one line of plain output: the saved notebook holds that
  line, no widget view and no secret, and reopens without "Error displaying widget".

The kernels use the real Secret Service of the test run (scripts/with-secret-service.sh).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest

from session_magics.demo import DemoServer
from tests.e2e.harness import FORM, FRONTENDS, NotebookPage, WidgetAckGate, wait_until

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def api(secret_service_keyring):
    with DemoServer(password="pw-" + secrets.token_hex(6)) as server:
        yield server


def setup_cell(api: Any) -> str:
    return f'%load_ext session_magics\nAPI = "{api.url}"'


# A window of observation: this many answers of Jupyter Server (one per 20 ms or
# slower) are recorded after the last thing the test did, so that a late idle has
# its chance to show.
ANSWERS = 25


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_kernel_reads_busy_while_the_form_waits(notebook, kernel, frontend, api) -> None:
    """In the page (JupyterLab: toolbar indicator and status bar; Notebook 7: toolbar
    indicator and the tab's favicon) and in Jupyter Server's /api/sessions."""
    nb = notebook([setup_cell(api), "%login {{API}}", 'print("NEXT")'], kernel)
    nb.run_all()
    form = nb.login_form()
    form.locator("button", has_text="Log in").wait_for()
    with nb.recording_status() as before_touched:
        wait_until(lambda: before_touched.server_answers() >= ANSWERS, 30, "answers of Jupyter Server")
    before_touched.assert_stayed_busy()
    with nb.recording_status() as while_typing:
        form.locator("input[type=text]").first.press_sequentially("demo", delay=40)
        nb.fill_login(api.config.password)  # returns once the kernel took the value
        seen = while_typing.server_answers()
        wait_until(lambda: while_typing.server_answers() >= seen + ANSWERS, 30, "answers of Jupyter Server")
    while_typing.assert_stayed_busy()  # after widget messages were handled
    print(
        "passing idle shown (ms):",
        before_touched.blips + while_typing.blips,
        "idle answers of Jupyter Server:",
        (before_touched.server + while_typing.server).count("idle"),
        "of",
        len(before_touched.server + while_typing.server),
    )
    assert nb.prompts()[1] == "[*]:"
    nb.click("Log in")
    nb.wait_for_output(1, "Logged in as demo")
    nb.wait_for_output(2, "NEXT")
    nb.wait_idle()  # the checks above can see idle
    assert nb.status() == ("idle", "idle", "idle")


def _max_count(nb: NotebookPage) -> int:
    counts = [int(m.group(1)) for p in nb.prompts() if (m := re.fullmatch(r"\[(\d+)\]:", p))]
    return max(counts, default=0)


def test_enter_logs_in_and_the_keyboard_returns_to_the_notebook(notebook, kernel, api) -> None:
    nb = notebook([setup_cell(api), "%login {{API}} --user demo", 'print("NEXT")'], kernel)
    nb.run_all()
    pw = nb.login_form().locator("input[type=password]").first
    pw.fill(api.config.password)
    pw.press("Enter")
    out = nb.wait_for_output(1, "Logged in as demo")
    assert "Enter the password" not in out
    nb.wait_for_output(2, "NEXT")
    nb.wait_for_prompt(2, r"\[\d+\]:")
    before = _max_count(nb)
    nb.page.wait_for_function(
        "() => { const a = document.activeElement; return !!a && !!a.closest('.jp-Notebook'); }"
    )
    nb.page.keyboard.press("Shift+Enter")  # runs the active cell: a new execution count
    nb.page.wait_for_function(
        """(before) => Array.from(document.querySelectorAll(
             '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt'))
           .some(p => {
             const m = p.innerText.trim().match(/^\\[(\\d+)\\]:$/);
             return m && +m[1] > before;
           })""",
        arg=before,
    )


@pytest.mark.parametrize("user", ["", "--user demo"])
def test_the_keyboard_is_in_the_first_empty_field_when_the_form_appears(notebook, kernel, api, user) -> None:
    """Type at once, no click: the user name (when not given), Tab, the password, Enter."""
    nb = notebook([setup_cell(api), f"%login {{{{API}}}} {user}", 'print("NEXT")'], kernel)
    nb.run_all()
    form = nb.login_form()
    first = "input[type=text]" if not user else "input[type=password]"
    field = form.locator(first).first.element_handle()
    nb.page.wait_for_function("(el) => el === document.activeElement", arg=field)
    keys = nb.page.keyboard
    if not user:
        keys.type("demo")
        keys.press("Tab")
    keys.type(api.config.password)
    keys.press("Enter")
    out = nb.wait_for_output(1, "Logged in as demo")
    assert "Enter the password" not in out
    nb.wait_for_output(2, "NEXT")


@pytest.mark.parametrize("submit", ["Enter", "click"])
def test_a_fast_login_is_whole_when_the_kernel_acknowledges_widget_updates_late(
    notebook, page, kernel, api, submit
) -> None:
    """Name, Tab, password, Enter (or a click on Log in) while the page hears no
    acknowledgement of widget updates: ipywidgets' frontend then keeps a field's
    further updates back, while Enter and clicks go out at once. The kernel must
    still log in with the whole name and password, not with what arrived first."""
    gate = WidgetAckGate(page)
    nb = notebook([setup_cell(api), "%login {{API}}", 'print("NEXT")'], kernel)
    nb.run_all()
    form = nb.login_form()
    field = form.locator("input[type=text]").first.element_handle()
    nb.page.wait_for_function("(el) => el === document.activeElement", arg=field)
    gate.hold()
    try:
        keys = nb.page.keyboard
        keys.type("demo")
        keys.press("Tab")
        keys.type(api.config.password)
        if submit == "Enter":
            keys.press("Enter")
        else:
            form.locator("button", has_text="Log in").first.click()
        # Logged in, or the server's refusal (what half a name or password gets). Not "Enter
        # the password.": Enter sends its submit before the field's value, so the form may
        # say that for a moment and log in when the value follows.
        out = nb.wait_for_output(1, "Logged in as demo|answered")
    finally:
        gate.release()
    assert "Logged in as demo" in out, out
    nb.wait_for_output(2, "NEXT")


def test_finished_form_becomes_one_line_and_the_notebook_reopens_cleanly(notebook, kernel, api) -> None:
    nb = notebook([setup_cell(api), "%login {{API}} --user demo", 'print("NEXT")'], kernel)
    nb.run_all()
    nb.fill_login(api.config.password)
    nb.click("Log in")
    nb.wait_for_output(2, "NEXT")
    nb.page.wait_for_function(f"() => document.querySelectorAll('{FORM}').length === 0")  # replaced
    out = nb.outputs()[1]
    assert out.count("Logged in") == 1, out
    assert out.strip().startswith("✓ Logged in as demo at"), out
    nb.screenshot(f"form-done-{kernel}")

    saved = nb.save()
    cell = saved["cells"][1]
    text = json.dumps(cell["outputs"])
    assert WIDGET_VIEW not in text, cell["outputs"]
    plain = "".join(
        "".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", "")) for o in cell["outputs"]
    )
    assert plain.startswith("✓ Logged in as demo at"), cell["outputs"]
    raw = nb.path.read_text()
    assert api.config.password not in raw
    issued = api.state.issued_secrets()
    assert issued and not any(s in raw for s in issued)

    nb.lab.shutdown_kernels()
    reopened = NotebookPage(nb.lab, nb.page, nb.name)
    reopened.page.goto(nb.lab.notebook_url(nb.name))
    reopened.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    reopened.wait_for_output(1, "✓ Logged in as demo at")
    reopened.wait_idle()  # the widget manager has had its chance to restore state
    page_text = reopened.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").inner_text()
    assert "Error displaying widget" not in page_text
    assert "model not found" not in page_text
    reopened.screenshot(f"form-reopened-{kernel}")
