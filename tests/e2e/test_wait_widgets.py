"""The waiting machinery alone: a running cell shows a stand-in form (tests/e2e/toy.py)
and waits through session_magics.waiting; the cells below wait for it.

Each test runs on both kernel lines (ipykernel 6.29.x and 7.4.x) in a real
JupyterLab driven by headless Chromium. The password is typed only after Run All,
while the first cell is already waiting, and the cell reports the password's
length it received (never the password). The same scenarios with the real form
(%login, %%api) are in test_session_expiry.py, test_login_form.py and
test_form_edges.py.
"""

from __future__ import annotations

import pytest

from tests.e2e import toy
from tests.e2e.harness import NotebookPage, run_notebook, wait_until

PASSWORD = "s3cret-Pa55"


def _assert_blocked(nb: NotebookPage, waiting_cell: int) -> None:
    """The form is up, the waiting cell still runs and the ones below are queued."""
    nb.login_form()
    prompts = nb.prompts()
    assert prompts[waiting_cell] == "[*]:", prompts
    assert all(p == "[*]:" for p in prompts[waiting_cell + 1 :]), prompts
    outs = nb.outputs()
    assert "NEXT RAN" not in "".join(outs), outs
    assert "RESULT" not in outs[waiting_cell], outs


# Answers of Jupyter Server recorded after the kernel took the password, so that a
# late idle has its chance to show.
ANSWERS = 25


def _log_in(nb: NotebookPage, name: str) -> None:
    """Type the password (after Run All: the form is up) and log in; while the kernel
    handles those widget messages, JupyterLab (toolbar indicator, status bar) and
    Jupyter Server keep reading busy."""
    with nb.recording_status() as rec:
        nb.fill_login(PASSWORD, user="alice")  # returns once the kernel took the value
        seen = rec.server_answers()
        wait_until(lambda: rec.server_answers() >= seen + ANSWERS, 30, "answers of Jupyter Server")
    rec.assert_stayed_busy()
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
    nb = notebook([toy.FORM_SETUP, toy.SYNC_IN_FUNCTION.format(timeout=90), toy.NEXT], kernel)
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


KERNELS_SETTINGS = "@jupyterlab/apputils-extension:kernels-settings"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_k7_with_comms_over_subshells_disabled(notebook, lab, mode: str) -> None:
    """JupyterLab's default sends widget messages to a kernel subshell; with that
    turned off every message reaches the main shell, which is busy with the cell.
    (With the real form: test_form_edges.py.)"""
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
