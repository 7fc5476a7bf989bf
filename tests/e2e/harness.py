"""Drive a real JupyterLab or Notebook 7 in headless Chromium.

One Jupyter server serves both frontends: JupyterLab at ``/lab/tree/NAME.ipynb``,
Notebook 7 at ``/tree`` (the file list) and ``/notebooks/NAME.ipynb``. A test picks
one with the ``frontend`` fixture (:data:`FRONTENDS`); the page structure that
differs (Notebook 7 has no status bar: its busy indicator is the tab's favicon) is
hidden behind :class:`NotebookPage`.

The pieces, from the bottom up:

* :func:`kernel_pythons` runs ``scripts/kernels.sh`` (two kernel environments,
  ipykernel 6.29.x and 7.4.x) and writes their kernelspecs ``sm-k6``/``sm-k7``
  into a Jupyter data dir.
* :class:`JupyterLab` starts ``jupyter lab`` on 127.0.0.1 with every Jupyter dir
  (config, runtime, data, lab settings) in a temporary folder, and talks to its
  REST API (settings, sessions, kernels).
* :func:`launch_browser` starts Debian's Chromium through Playwright.
* :class:`NotebookPage` writes a notebook from a list of cell sources, opens it in
  either frontend, runs it ("Run All") and reads what each cell shows and what the
  kernel status reads; it also finds and fills the login form (CSS class
  ``session-magics-login``) and takes screenshots.
* :class:`StatusRecorder` records every kernel status the page shows and Jupyter
  Server reports while a test acts, to assert that it read busy throughout.
* :func:`wait_until` waits on a condition outside the page (a file, the REST API).
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
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from tests.conditions import wait_until
from tests.servers import free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ("sm-k6", "sm-k7")
FRONTENDS = ("lab", "notebook7")
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
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log_path.read_text()[-4000:]}")
            with suppress(OSError, urllib.error.URLError):
                self.api("GET", "/api/status")
                return True
            return False

        try:
            wait_until(answers, timeout, "jupyter lab to answer", poll=0.25)
        except AssertionError:
            self.stop()
            raise RuntimeError(f"jupyter lab did not answer in {timeout} s") from None

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

    def notebook_url(self, name: str, frontend: str = "lab") -> str:
        if frontend == "lab":
            return f"{self.url}/lab/tree/{name}?token={self.token}&reset"
        if frontend == "notebook7":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        raise ValueError(f"unknown frontend {frontend!r} (one of {FRONTENDS})")

    def tree_url(self) -> str:
        """Notebook 7's file list."""
        return f"{self.url}/tree?token={self.token}"

    def execution_state(self, name: str) -> str | None:
        """Jupyter Server's ``execution_state`` of the kernel of notebook ``name``
        (what /api/sessions reports, and what an idle-kernel culler acts on)."""
        for session in self.api("GET", "/api/sessions") or []:
            if session.get("path") == name:
                return str(session["kernel"]["execution_state"])
        return None


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


_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

_OUTPUTS_JS = f"""
() => Array.from(document.querySelectorAll('{_PANEL} .jp-Notebook .jp-CodeCell'))
  .map(c => {{ const o = c.querySelector('.jp-OutputArea'); return o ? o.innerText : ''; }})
"""

_PROMPTS_JS = f"""
() => Array.from(document.querySelectorAll('{_PANEL} .jp-Notebook .jp-CodeCell'))
  .map(c => {{ const p = c.querySelector('.jp-InputPrompt'); return p ? p.innerText.trim() : ''; }})
"""

# What the page shows of the kernel's status, as [indicator, shown]:
# the toolbar's execution indicator (both frontends), and JupyterLab's status bar
# ("… | Busy") or Notebook 7's favicon (favicon-busy-N.ico while busy). "none"
# where the page shows no kernel (not started, or "No Kernel").
_STATUS_JS = {
    "lab": f"""
() => {{
  const ind = document.querySelector('{_PANEL} .jp-Notebook-ExecutionIndicator');
  const bar = document.querySelector('#jp-main-statusbar');
  const text = bar ? bar.innerText : '';
  const m = text.match(/\\|\\s*(Busy|Idle)/);
  const shown = /No Kernel/.test(text) || !m ? 'none' : m[1].toLowerCase();
  return [ind ? ind.getAttribute('data-status') : 'none', shown];
}}
""",
    "notebook7": f"""
() => {{
  const ind = document.querySelector('{_PANEL} .jp-Notebook-ExecutionIndicator');
  const name = document.querySelector('.jp-KernelName');
  const icon = document.querySelector('link[rel~="icon"]');
  const text = name ? name.innerText.trim() : '';
  const href = icon ? icon.getAttribute('href') : '';
  const shown = !text || /No Kernel/.test(text) ? 'none' : (/favicon-busy/.test(href) ? 'busy' : 'idle');
  return [ind ? ind.getAttribute('data-status') : 'none', shown];
}}
""",
}

# Installs a recorder of every change of the status the page shows (a
# MutationObserver: no sampling) into window.__smStatuses, as [indicator, shown, ms].
_RECORD_JS = """
() => {{
  const read = {read};
  const seen = [[...read(), performance.now()]];
  const observer = new MutationObserver(() => {{
    const now = read();
    const last = seen[seen.length - 1];
    if (now[0] !== last[0] || now[1] !== last[1]) seen.push([...now, performance.now()]);
  }});
  observer.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true,
                               attributeFilter: ['data-status', 'href']}});
  window.__smStatuses = seen;
  window.__smObserver = observer;
}}
"""


class StatusRecorder:
    """Records what the kernel status reads while a test acts: every change the
    page shows (a MutationObserver in the page) and the answers of Jupyter
    Server's /api/sessions (asked over and over from a thread).

    While a form waits, the kernel answers each widget message with an ``idle``
    (ipywidgets' frontend waits for it before it sends the next update), followed
    at once by a ``busy`` for the waiting cell. The page may show that ``idle`` for
    the moment between the two messages, and Jupyter Server may answer ``idle`` in
    that moment; what must never happen is that it stays. So
    :meth:`assert_stayed_busy` asserts that the page and Jupyter Server read
    busy when the recording starts and still (again) when it ends, after whatever
    the test did meanwhile, and that the page never lost the kernel. :attr:`blips`
    keeps how long each passing idle was shown in the page (ms), and
    :attr:`server` every answer, for the record.
    """

    def __init__(self, nb: NotebookPage) -> None:
        self.nb = nb
        self.server: list[str | None] = []
        self.shown: list[tuple[str, str]] = []
        self.blips: list[float] = []  # milliseconds each passing non-busy state was shown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_server, daemon=True)

    def _poll_server(self) -> None:
        while not self._stop.wait(0.02):  # a sampling period, not a synchronisation
            with suppress(OSError, urllib.error.URLError):
                self.server.append(self.nb.lab.execution_state(self.nb.name))

    def __enter__(self) -> StatusRecorder:
        self.nb.page.evaluate(_RECORD_JS.format(read=_STATUS_JS[self.nb.frontend].strip()))
        self._thread.start()
        return self

    def server_answers(self) -> int:
        """How many answers of Jupyter Server were recorded so far."""
        return len(self.server)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        recorded = self.nb.page.evaluate(
            "() => { window.__smObserver.disconnect(); return window.__smStatuses; }"
        )
        self.shown = [(str(a), str(b)) for a, b, _ in recorded]
        times = [float(t) for _, _, t in recorded]
        self.blips = [
            round(times[i + 1] - times[i], 1)
            for i, state in enumerate(self.shown[:-1])
            if state != ("busy", "busy")
        ]

    def assert_stayed_busy(self) -> None:
        shown = self.shown
        assert shown, "nothing was recorded in the page"
        server = self.server
        # The recording can start inside the moment between an idle the kernel publishes for
        # another message and the waiting cell's busy that follows it: a first state that is
        # not busy counts as that moment when the page shows busy next and Jupyter Server's
        # first answer was busy. An idle that stays (the bug this guards against) still fails:
        # only changes are recorded, so with both ends busy every idle was followed by busy.
        if len(shown) > 1 and shown[0] != ("busy", "busy") and shown[1] == ("busy", "busy"):
            if server and server[0] == "busy":
                shown = shown[1:]
        assert shown[0] == ("busy", "busy") and shown[-1] == ("busy", "busy"), f"the page showed {shown}"
        assert {state for state in shown if "none" in state} == set(), f"the page lost the kernel: {shown}"
        assert server and server[0] == "busy" and server[-1] == "busy", f"Jupyter Server answered {server}"
        assert set(server) <= {"busy", "idle"}, f"Jupyter Server answered {server}"


class WidgetAckGate:
    """Stands between the page and the kernel's websocket (Playwright's WebSocket
    routing) and, while :meth:`hold` is on, keeps back from the page every ``idle``
    the kernel sends in answer to a ``comm_msg``: the acknowledgement ipywidgets'
    frontend waits for before it sends a widget's next update. So the page behaves
    as with a kernel that answers widget messages late: a widget's further updates
    stay in the browser, while clicks and Enter's "submit" (custom messages, never
    held back by ipywidgets) go out at once. :meth:`release` sends what was kept.

    Install it before the notebook opens (``WidgetAckGate(page)``). Both framings of
    Jupyter Server's kernel websocket are read: JSON text and the binary
    ``v1.kernel.websocket.jupyter.org`` protocol.
    """

    def __init__(self, page: Any) -> None:
        self.holding = False
        self.kept: list[tuple[Any, str | bytes]] = []
        self.lock = threading.Lock()
        page.route_web_socket(re.compile(r"/api/kernels/[^/]+/channels"), self._route)

    def _route(self, ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)
        server.on_message(lambda message: self._from_kernel(ws, message))

    @staticmethod
    def acknowledges_widget_update(message: str | bytes) -> bool:
        """Whether a kernel message is an ``idle`` status whose parent is a ``comm_msg``."""
        if isinstance(message, str):
            msg = json.loads(message)
            channel, parent, content = msg.get("channel"), msg.get("parent_header"), msg.get("content")
        else:  # v1: the number of offsets, the offsets, then channel, header, parent, metadata, content
            count = int.from_bytes(message[:8], "little")
            offsets = [int.from_bytes(message[8 + 8 * i : 16 + 8 * i], "little") for i in range(count)]
            parts = [message[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
            if len(parts) < 5:
                return False
            channel = parts[0].decode()
            parent, content = json.loads(parts[2] or b"{}"), json.loads(parts[4] or b"{}")
        return (
            channel == "iopub"
            and isinstance(content, dict)
            and content.get("execution_state") == "idle"
            and isinstance(parent, dict)
            and parent.get("msg_type") == "comm_msg"
        )

    def _from_kernel(self, ws: Any, message: str | bytes) -> None:
        with self.lock:
            if self.holding and self.acknowledges_widget_update(message):
                self.kept.append((ws, message))
                return
        ws.send(message)

    def hold(self) -> None:
        with self.lock:
            self.holding = True

    def release(self) -> int:
        """Stop holding and send what was kept, in order; return how many."""
        with self.lock:
            self.holding = False
            kept, self.kept = self.kept, []
        for ws, message in kept:
            with suppress(Exception):  # the page may be gone
                ws.send(message)
        return len(kept)


class NotebookPage:
    """One notebook of a running :class:`JupyterLab`, open in a browser page with
    one of the :data:`FRONTENDS`."""

    def __init__(self, lab: JupyterLab, page: Any, name: str, frontend: str = "lab") -> None:
        if frontend not in FRONTENDS:
            raise ValueError(f"unknown frontend {frontend!r} (one of {FRONTENDS})")
        self.lab = lab
        self.page = page
        self.name = name
        self.frontend = frontend
        self.path = lab.notebooks / name

    # -- opening and running ---------------------------------------------------

    @classmethod
    def create(
        cls, lab: JupyterLab, page: Any, cells: Sequence[str], kernel: str, name: str, frontend: str = "lab"
    ) -> NotebookPage:
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        write_notebook(lab.notebooks / name, cells, kernel)
        return cls(lab, page, name, frontend)

    def open(self, timeout: float = 60.0) -> NotebookPage:
        if self.frontend == "notebook7":
            # Notebook 7's file list (/tree) shows it first; it would open the notebook
            # in a new tab, at the address the page is sent to below.
            self.page.goto(self.lab.tree_url())
            self.page.locator(".jp-DirListing-itemText", has_text=self.name).first.wait_for(
                timeout=timeout * 1000
            )
        self.page.goto(self.lab.notebook_url(self.name, self.frontend))
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.wait_idle(timeout)
        return self

    def status(self) -> tuple[str, str, str | None]:
        """(toolbar indicator, status bar or favicon, Jupyter Server's execution_state)."""
        indicator, shown = self.page.evaluate(_STATUS_JS[self.frontend])
        return str(indicator), str(shown), self.lab.execution_state(self.name)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Kernel started and idle: the page's indicators and Jupyter Server agree."""
        read = _STATUS_JS[self.frontend].strip()
        self.page.wait_for_function(
            f"() => {{ const s = ({read})(); return s[0] === 'idle' && s[1] === 'idle'; }}",
            timeout=timeout * 1000,
        )
        wait_until(
            lambda: self.lab.execution_state(self.name) == "idle",
            timeout,
            f"Jupyter Server to report {self.name}'s kernel idle",
        )

    def run_all(self) -> None:
        # The same menu in both frontends: Run → Run All Cells.
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    def interrupt(self) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Interrupt Kernel$")).click()

    def recording_status(self) -> StatusRecorder:
        """``with nb.recording_status() as rec: ...`` then ``rec.assert_stayed_busy()``."""
        return StatusRecorder(self)

    # -- reading ---------------------------------------------------------------

    def outputs(self) -> list[str]:
        """The text each code cell shows in its output area."""
        return list(self.page.evaluate(_OUTPUTS_JS))

    def prompts(self) -> list[str]:
        """Each code cell's prompt, e.g. ``[*]:``, ``[3]:`` or ``[ ]:``."""
        return list(self.page.evaluate(_PROMPTS_JS))

    def wait_for_output(self, index: int, pattern: str, timeout: float = 30.0) -> str:
        """Wait until cell ``index``'s output matches ``pattern`` (a regex that means the
        same in Python and JavaScript); return it."""
        return self._wait_for(_OUTPUTS_JS, self.outputs, "output", index, pattern, timeout)

    def wait_for_prompt(self, index: int, pattern: str, timeout: float = 30.0) -> str:
        """Wait until cell ``index``'s prompt (e.g. ``[3]:``) matches ``pattern``; return it."""
        return self._wait_for(_PROMPTS_JS, self.prompts, "prompt", index, pattern, timeout)

    def _wait_for(
        self, js: str, read: Callable[[], list[str]], what: str, index: int, pattern: str, timeout: float
    ) -> str:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                f"([i, p]) => {{ const v = ({js})(); return i < v.length && new RegExp(p).test(v[i]); }}",
                arg=[index, pattern],
                timeout=timeout * 1000,
            )
        except PlaywrightTimeout:
            values = read()
            last = values[index] if index < len(values) else ""
            raise AssertionError(f"cell {index}'s {what} never matched {pattern!r}; it is {last!r}") from None
        value = read()[index]
        assert re.search(pattern, value), (pattern, value)
        return value

    def wait_all_ran(self, timeout: float = 60.0) -> list[str]:
        """Wait until every code cell shows an execution count; return the outputs."""
        self.page.wait_for_function(
            f"() => ({_PROMPTS_JS})().every(p => /^\\[\\d+\\]:$/.test(p))", timeout=timeout * 1000
        )
        return self.outputs()

    # -- the login form ----------------------------------------------------------

    def login_form(self, timeout: float = 30.0, *, nth: int = 0) -> Any:
        form = self.page.locator(FORM).nth(nth)
        form.wait_for(state="visible", timeout=timeout * 1000)
        return form

    def fill_login(
        self, password: str, user: str | None = None, timeout: float = 30.0, *, nth: int = 0
    ) -> None:
        """Type into the form and leave the Password field (ipywidgets sends its value
        then); return once the kernel has taken the value (it empties the field)."""
        form = self.login_form(timeout, nth=nth)
        if user is not None:
            field = form.locator("input[type=text]").first
            field.fill(user)
        pw = form.locator("input[type=password]").first
        pw.fill(password)
        pw.press("Tab")
        pw.page.wait_for_function("(el) => el.value === ''", arg=pw.element_handle(), timeout=timeout * 1000)

    def click(self, label: str, timeout: float = 30.0, *, nth: int = 0) -> None:
        form = self.login_form(timeout, nth=nth)
        form.locator("button", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).first.click()

    # -- saving and pictures -------------------------------------------------------

    def save(self, timeout: float = 20.0) -> dict[str, Any]:
        """Save from the browser (Ctrl+S) and return the notebook JSON on disk."""
        before = self.path.stat().st_mtime_ns if self.path.exists() else 0
        self.page.locator(f"{_PANEL} .jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")

        # Jupyter Server copies the file to ".~NAME" first, rewrites NAME in place
        # and removes the copy: saved once the copy is gone and NAME is whole.
        backup = self.path.with_name(".~" + self.path.name)

        def saved() -> dict[str, Any] | None:
            if not self.path.exists() or self.path.stat().st_mtime_ns == before or backup.exists():
                return None
            try:
                return dict(json.loads(self.path.read_text()))
            except json.JSONDecodeError:  # still being written
                return None

        return wait_until(saved, timeout, f"{self.name} to be saved")

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
    frontend: str = "lab",
    timeout: float = 60.0,
) -> list[str]:
    """Write a notebook of ``cells``, open it with ``kernel``, Run All, let
    ``interact`` act on the page (e.g. fill and submit the login form), wait until
    every cell has an execution count and return the text each cell shows."""
    nb = NotebookPage.create(lab, page, cells, kernel, name, frontend).open()
    nb.run_all()
    if interact is not None:
        interact(nb)
    try:
        return nb.wait_all_ran(timeout)
    except Exception:
        nb.screenshot(f"{name}-timeout")
        raise AssertionError(f"notebook {name} did not finish; outputs: {nb.outputs()}") from None
