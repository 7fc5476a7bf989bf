"""A running cell shows a login form and waits; the cells below wait for it.

Each test runs on both kernel lines (ipykernel 6.29.x and 7.4.x) in a real
JupyterLab driven by headless Chromium. The password is typed only after Run All,
while the first cell is already waiting, and the cell reports the password's
length it received (never the password).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e import toy
from tests.e2e.harness import FORM, NotebookPage, run_notebook

PASSWORD = "s3cret-Pa55"


def _assert_blocked(nb: NotebookPage, waiting_cell: int) -> None:
    """The form is up, the waiting cell still runs and the next one has not run."""
    nb.login_form()
    prompts = nb.prompts()
    assert prompts[waiting_cell] == "[*]:", prompts
    outs = nb.outputs()
    assert "NEXT RAN" not in "".join(outs), outs
    assert "RESULT" not in outs[waiting_cell], outs


def _assert_shown_busy(nb: NotebookPage) -> None:
    """After widget messages were handled, JupyterLab still shows the kernel busy: the
    toolbar's execution indicator and the status bar, sampled over a second."""
    nb.page.wait_for_timeout(500)
    seen = set()
    for _ in range(5):
        seen.add(tuple(nb.page.evaluate(_STATUS_JS)))
        nb.page.wait_for_timeout(200)
    assert seen == {("busy", True)}, seen


_STATUS_JS = """
() => {
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  const bar = document.querySelector('#jp-main-statusbar');
  return [ind ? ind.getAttribute('data-status') : null, /\\|\\s*Busy/.test(bar ? bar.innerText : '')];
}
"""


def _log_in(nb: NotebookPage, name: str) -> None:
    nb.page.wait_for_timeout(300)  # let the run settle: the password comes after Run All
    nb.fill_login(PASSWORD, user="alice")
    _assert_shown_busy(nb)
    nb.screenshot(f"{name}-filled")
    nb.click("Log in")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_form_waits_then_next_cell_runs(notebook, kernel: str, mode: str) -> None:
    wait_cell = toy.SYNC_WAIT if mode == "sync" else toy.ASYNC_WAIT
    nb = notebook([toy.FORM_SETUP, wait_cell.format(timeout=90), toy.NEXT], kernel)
    nb.run_all()
    _assert_blocked(nb, 1)
    nb.screenshot(f"{kernel}-{mode}-form")
    _log_in(nb, f"{kernel}-{mode}")
    out = nb.wait_for_output(1, r"RESULT ok LEN \d+")
    assert f"RESULT ok LEN {len(PASSWORD)} WAITED True" in out
    assert "FRONTEND widgets" in out
    assert PASSWORD not in out
    nb.wait_for_output(2, "NEXT RAN")
    nb.screenshot(f"{kernel}-{mode}-done")


def test_cancel(lab, page, kernel: str) -> None:
    """Also the example of run_notebook(): cells in, interaction, outputs out."""

    def cancel(nb: NotebookPage) -> None:
        _assert_blocked(nb, 1)
        nb.fill_login("typed-then-cancelled")
        nb.click("Cancel")

    cells = [toy.FORM_SETUP, toy.SYNC_WAIT.format(timeout=90), toy.NEXT]
    outs = run_notebook(lab, page, cells, kernel=kernel, name=f"cancel-{kernel}", interact=cancel)
    assert "RESULT cancel LEN 0 WAITED True" in outs[1]
    assert outs[2].strip() == "NEXT RAN"


def test_timeout_then_next_cell_runs(notebook, kernel: str) -> None:
    nb = notebook([toy.FORM_SETUP, toy.SYNC_WAIT.format(timeout=3), toy.NEXT], kernel)
    nb.run_all()
    nb.login_form()
    out = nb.wait_for_output(1, r"RESULT", timeout=30)
    assert "RESULT None LEN 0 WAITED False" in out
    nb.wait_for_output(2, "NEXT RAN")


def test_sync_wait_inside_function(notebook, kernel: str) -> None:
    """Where no cell rewriting can help (inside a def), the sync wait must still work."""
    nb = notebook(
        [toy.FORM_SETUP, toy.SYNC_IN_FUNCTION.format(timeout=90), toy.NEXT], kernel
    )
    nb.run_all()
    _assert_blocked(nb, 1)
    _log_in(nb, f"{kernel}-in-function")
    out = nb.wait_for_output(1, rf"RESULT ok LEN {len(PASSWORD)} WAITED True")
    assert "CANNOT WAIT" not in out
    nb.wait_for_output(2, "NEXT RAN")


@pytest.mark.parametrize("force", [False, True], ids=["auto", "forced"])
def test_magic_through_transformer(notebook, kernel: str, force: bool) -> None:
    """``answer = %toylogin`` waits on the path this kernel prefers (auto), or is
    always rewritten to ``await`` (forced); both must work on both kernels."""
    cells = [toy.FORM_SETUP, toy.MAGIC_SETUP.format(force=force), toy.MAGIC_CALL, toy.NEXT]
    nb = notebook(cells, kernel)
    nb.run_all()
    _assert_blocked(nb, 2)
    setup = nb.outputs()[1]
    if kernel == "sm-k7":
        assert "INSTALLED True" in setup and "PREFERRED async" in setup, setup
    else:
        assert f"INSTALLED {force}" in setup and "PREFERRED sync" in setup, setup
    _log_in(nb, f"{kernel}-magic-{force}")
    out = nb.wait_for_output(2, r"ANSWER")
    assert f"RESULT ok LEN {len(PASSWORD)} WAITED True" in out
    assert "ANSWER ok" in out
    nb.wait_for_output(3, "NEXT RAN")


def test_saved_notebook_has_no_password(notebook, kernel: str) -> None:
    """Widget state is saved into the notebook (saveState): the typed password must
    not be in the file, neither while the form waits nor after logging in."""
    nb = notebook([toy.FORM_SETUP, toy.SYNC_WAIT.format(timeout=90), toy.NEXT], kernel)
    nb.run_all()
    _assert_blocked(nb, 1)
    nb.fill_login(PASSWORD, user="alice")
    nb.page.wait_for_timeout(500)
    while_waiting = json.dumps(nb.save())
    nb.click("Log in")
    nb.wait_for_output(2, "NEXT RAN")
    after = json.dumps(nb.save())
    assert "application/vnd.jupyter.widget-state+json" in after  # saveState is on
    assert PASSWORD not in after
    assert PASSWORD not in while_waiting


KERNELS_SETTINGS = "@jupyterlab/apputils-extension:kernels-settings"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_k7_with_comms_over_subshells_disabled(notebook, lab, mode: str) -> None:
    """JupyterLab's default sends widget messages to a kernel subshell; with that
    turned off every message reaches the main shell, which is busy with the cell."""
    lab.set_setting(KERNELS_SETTINGS, {"commsOverSubshells": "disabled"})
    try:
        wait_cell = toy.SYNC_WAIT if mode == "sync" else toy.ASYNC_WAIT
        cells = [toy.FORM_SETUP, wait_cell.format(timeout=90), toy.NEXT, toy.SUBSHELLS]
        nb = notebook(cells, "sm-k7")
        nb.run_all()
        _assert_blocked(nb, 1)
        _log_in(nb, f"k7-nosubshell-{mode}")
        out = nb.wait_for_output(1, r"RESULT ok LEN \d+")
        assert f"RESULT ok LEN {len(PASSWORD)} WAITED True" in out
        nb.wait_for_output(2, "NEXT RAN")
        assert "SUBSHELLS 0" in nb.wait_for_output(3, "SUBSHELLS")
    finally:
        lab.set_setting(KERNELS_SETTINGS, {})


def test_two_forms_in_one_run(notebook, kernel: str) -> None:
    """Run All over two cells that each wait (sync, then async): each form comes up
    only when its cell runs, and everything still runs in order."""
    cells = [
        toy.FORM_SETUP,
        toy.SYNC_WAIT.format(timeout=90),
        toy.ASYNC_WAIT.format(timeout=90),
        toy.NEXT,
    ]
    nb = notebook(cells, kernel)
    nb.run_all()
    _assert_blocked(nb, 1)
    assert nb.page.locator(FORM).count() == 1
    _log_in(nb, f"{kernel}-first-of-two")
    nb.wait_for_output(1, rf"RESULT ok LEN {len(PASSWORD)} WAITED True")
    nb.wait_for_prompt(2, r"^\[\*\]:$")
    nb.page.wait_for_function(f"() => document.querySelectorAll('{FORM}').length === 2")
    assert "NEXT RAN" not in "".join(nb.outputs())
    form = nb.page.locator(FORM).nth(1)
    form.locator("input[type=password]").fill("second")
    form.locator("input[type=password]").press("Tab")
    nb.page.wait_for_timeout(300)
    form.locator("button", has_text="Log in").click()
    nb.wait_for_output(2, r"RESULT ok LEN 6 WAITED True")
    nb.wait_for_output(3, "NEXT RAN")


def test_interrupt_while_waiting(notebook, kernel: str) -> None:
    """Interrupting the waiting cell stops it; the queued cells are not run."""
    nb = notebook([toy.FORM_SETUP, toy.SYNC_WAIT.format(timeout=90), toy.NEXT], kernel)
    nb.run_all()
    _assert_blocked(nb, 1)
    nb.page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
    nb.page.locator(".lm-Menu-itemLabel", has_text="Interrupt Kernel").click()
    nb.wait_for_output(1, "KeyboardInterrupt")
    nb.wait_idle()
    nb.page.wait_for_timeout(1000)
    assert "NEXT RAN" not in nb.outputs()[2]
    assert nb.prompts()[2] == "[ ]:"  # aborted, never executed
