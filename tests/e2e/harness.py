"""Drive a real JupyterLab in headless Chromium.

The pieces, from the bottom up:

* :func:`kernel_pythons` runs ``scripts/kernels.sh`` (two kernel environments,
  ipykernel 6.29.x and 7.4.x) and writes their kernelspecs ``sm-k6``/``sm-k7``
  into a Jupyter data dir.
* :class:`JupyterLab` starts ``jupyter lab`` on 127.0.0.1 with every Jupyter dir
  (config, runtime, data, lab settings) in a temporary folder, and talks to its
  REST API (settings, kernels).
* :func:`launch_browser` starts Debian's Chromium through Playwright.
* :class:`NotebookPage` writes a notebook from a list of cell sources, opens it,
  runs it ("Run All") and reads what each cell shows; it also finds and fills the
  login form (CSS class ``session-magics-login``) and takes screenshots.
* :func:`run_notebook` does all of that in one call: cells in, outputs out.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ("sm-k6", "sm-k7")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FORM = ".session-magics-login"


def artifacts_dir() -> Path:
    path = Path(os.environ.get("SESSION_MAGICS_ARTIFACTS", ROOT / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshots_dir() -> Path:
    path = artifacts_dir() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jupyter_bin() -> Path:
    found = Path(sys.executable).with_name("jupyter")
    if found.exists():
        return found
    which = shutil.which("jupyter")
    if which is None:
        raise RuntimeError("jupyter is not installed (pip install -e '.[test]')")
    return Path(which)


def kernel_pythons(data_dir: Path | None = None) -> dict[str, Path]:
    """Prepare the kernel environments and return {kernelspec name: python}.

    With ``data_dir``, the kernelspecs are also written into ``data_dir/kernels``.
    Fast when the environments already exist (stamp files).
    """
    cmd = ["bash", str(ROOT / "scripts" / "kernels.sh")]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/kernels.sh failed:\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        name, _, python = line.partition("\t")
        if name in KERNELS and python:
            result[name] = Path(python)
    missing = set(KERNELS) - set(result)
    if missing:
        raise RuntimeError(f"scripts/kernels.sh did not report {sorted(missing)}:\n{proc.stdout}")
    return result


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


# Lab settings for every test run: widget state saved in notebooks, no news
# pop-ups, every cell attached to the DOM (so outputs can be read).
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyter-widgets/jupyterlab-manager/plugin": {"saveState": True},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


class JupyterLab:
    """A ``jupyter lab`` server on 127.0.0.1, isolated in ``base`` (a temp dir)."""

    def __init__(self, base: Path, *, kernels: bool = True) -> None:
        self.base = base
        self.notebooks = base / "notebooks"
        self.data_dir = base / "data"
        self.settings_dir = base / "lab-settings"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.log_path = base / "jupyterlab.log"
        self.kernels = kernels
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.base / "config"),
            JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
            JUPYTER_DATA_DIR=str(self.data_dir),
            JUPYTERLAB_SETTINGS_DIR=str(self.settings_dir),
            JUPYTERLAB_WORKSPACES_DIR=str(self.base / "workspaces"),
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.base / "ipython"),
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        env.pop("JPY_SESSION_NAME", None)
        env.pop("SESSION_MAGICS_FRONTEND", None)
        return env

    def start(self, timeout: float = 60.0) -> None:
        for d in (self.notebooks, self.data_dir, self.settings_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.kernels:
            kernel_pythons(self.data_dir)
        for plugin, values in LAB_SETTINGS.items():
            _write_json(self.settings_dir / f"{plugin}.jupyterlab-settings", values)
        cmd = [
            str(_jupyter_bin()),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.notebooks}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=",
            "--ServerApp.allow_root=True",
        ]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.base)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log_path.read_text()[-4000:]}")
            with suppress(OSError, urllib.error.URLError):
                self.api("GET", "/api/status")
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer in {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        with suppress(Exception):
            self.shutdown_kernels()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
        with suppress(OSError):
            shutil.copy(self.log_path, artifacts_dir() / "jupyterlab.log")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def set_setting(self, plugin_id: str, values: dict[str, Any]) -> None:
        """Change a lab setting (takes effect for pages opened afterwards)."""
        self.api("PUT", f"/lab/api/settings/{plugin_id}", {"raw": json.dumps(values)})

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions") or []:
            with suppress(Exception):
                self.api("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.api("GET", "/api/kernels") or []:
            with suppress(Exception):
                self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"


@contextmanager
def running_lab(base: Path) -> Iterator[JupyterLab]:
    lab = JupyterLab(base)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@contextmanager
def launch_browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def write_notebook(path: Path, cells: Sequence[str], kernel: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


_OUTPUTS_JS = """
() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell'))
  .filter(c => c.classList.contains('jp-CodeCell'))
  .map(c => { const o = c.querySelector('.jp-OutputArea'); return o ? o.innerText : ''; })
"""

_PROMPTS_JS = """
() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell'))
  .map(c => { const p = c.querySelector('.jp-InputPrompt'); return p ? p.innerText.trim() : ''; })
"""

_IDLE_JS = """
() => {
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  if (!ind || ind.getAttribute('data-status') !== 'idle') return false;
  const bar = document.querySelector('#jp-main-statusbar');
  const text = bar ? bar.innerText : '';
  return /\\|\\s*Idle/.test(text) && !/No Kernel/.test(text);
}
"""


class NotebookPage:
    """One notebook of a running :class:`JupyterLab`, open in a browser page."""

    def __init__(self, lab: JupyterLab, page: Any, name: str) -> None:
        self.lab = lab
        self.page = page
        self.name = name
        self.path = lab.notebooks / name

    # -- opening and running ---------------------------------------------------

    @classmethod
    def create(cls, lab: JupyterLab, page: Any, cells: Sequence[str], kernel: str, name: str) -> NotebookPage:
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        write_notebook(lab.notebooks / name, cells, kernel)
        return cls(lab, page, name)

    def open(self, timeout: float = 60.0) -> NotebookPage:
        self.page.goto(self.lab.notebook_url(self.name))
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.wait_idle(timeout)
        return self

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Kernel started and idle (execution indicator and status bar agree)."""
        self.page.wait_for_function(_IDLE_JS, timeout=timeout * 1000)

    def run_all(self) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    # -- reading ---------------------------------------------------------------

    def outputs(self) -> list[str]:
        """The text each code cell shows in its output area."""
        return list(self.page.evaluate(_OUTPUTS_JS))

    def prompts(self) -> list[str]:
        """Each code cell's prompt, e.g. ``[*]:``, ``[3]:`` or ``[ ]:``."""
        return list(self.page.evaluate(_PROMPTS_JS))

    def wait_for_output(self, index: int, pattern: str, timeout: float = 30.0) -> str:
        """Wait until cell ``index``'s output matches ``pattern`` (regex); return it."""
        return self._wait_for(self.outputs, "output", index, pattern, timeout)

    def wait_for_prompt(self, index: int, pattern: str, timeout: float = 30.0) -> str:
        """Wait until cell ``index``'s prompt (e.g. ``[3]:``) matches ``pattern``; return it."""
        return self._wait_for(self.prompts, "prompt", index, pattern, timeout)

    def _wait_for(
        self, read: Callable[[], list[str]], what: str, index: int, pattern: str, timeout: float
    ) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            values = read()
            last = values[index] if index < len(values) else ""
            if regex.search(last):
                return last
            self.page.wait_for_timeout(200)
        raise AssertionError(f"cell {index}'s {what} never matched {pattern!r}; it is {last!r}")

    # -- the login form ----------------------------------------------------------

    def login_form(self, timeout: float = 30.0) -> Any:
        form = self.page.locator(FORM).first
        form.wait_for(state="visible", timeout=timeout * 1000)
        return form

    def fill_login(self, password: str, user: str | None = None, timeout: float = 30.0) -> None:
        form = self.login_form(timeout)
        if user is not None:
            field = form.locator("input[type=text]").first
            field.fill(user)
        pw = form.locator("input[type=password]").first
        pw.fill(password)
        # Commit the value the way a person would (ipywidgets sends it on input/blur).
        pw.press("Tab")

    def click(self, label: str, timeout: float = 30.0) -> None:
        form = self.login_form(timeout)
        form.locator("button", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).first.click()

    # -- saving and pictures -------------------------------------------------------

    def save(self, timeout: float = 20.0) -> dict[str, Any]:
        """Save from the browser (Ctrl+S) and return the notebook JSON on disk."""
        before = self.path.stat().st_mtime_ns if self.path.exists() else 0
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click(
            position={"x": 5, "y": 5}
        )
        self.page.keyboard.press("Control+s")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.path.exists() and self.path.stat().st_mtime_ns != before:
                time.sleep(0.3)
                return dict(json.loads(self.path.read_text()))
            self.page.wait_for_timeout(200)
        raise AssertionError("the notebook was not saved")

    def screenshot(self, name: str) -> Path:
        path = screenshots_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        with suppress(Exception):
            self.page.screenshot(path=str(path), full_page=True)
        return path


def run_notebook(
    lab: JupyterLab,
    page: Any,
    cells: Sequence[str],
    *,
    kernel: str,
    name: str,
    interact: Callable[[NotebookPage], None] | None = None,
    done: Callable[[NotebookPage], bool] | None = None,
    timeout: float = 60.0,
) -> list[str]:
    """Write a notebook of ``cells``, open it with ``kernel``, Run All, let
    ``interact`` act on the page (e.g. fill and submit the login form), wait until
    ``done(nb)`` (default: every cell has an execution count) and return the text
    each cell shows."""
    nb = NotebookPage.create(lab, page, cells, kernel, name).open()
    nb.run_all()
    if interact is not None:
        interact(nb)
    finished = done or (lambda n: all(re.fullmatch(r"\[\d+\]:", p) for p in n.prompts()))
    deadline = time.monotonic() + timeout
    while not finished(nb):
        if time.monotonic() > deadline:
            nb.screenshot(f"{name}-timeout")
            raise AssertionError(f"notebook {name} did not finish; outputs: {nb.outputs()}")
        page.wait_for_timeout(250)
    return nb.outputs()
