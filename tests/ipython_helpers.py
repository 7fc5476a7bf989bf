"""Drive the magics through a real IPython InteractiveShell, as a kernel would."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell


@dataclass
class CellRun:
    result: Any
    error: BaseException | None
    stdout: str
    stderr: str
    displayed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all_text(self) -> str:
        shown = "\n".join(str(b) for b in self.displayed)
        return "\n".join([self.stdout, self.stderr, shown, repr(self.result), str(self.error or "")])


class Shell:
    """A fresh InteractiveShell (one per test: a 'kernel') with a history file in ipython_dir."""

    def __init__(self, ipython_dir: str) -> None:
        os.environ["IPYTHONDIR"] = ipython_dir
        InteractiveShell.clear_instance()
        self.ip = InteractiveShell.instance(ipython_dir=ipython_dir)
        self.displayed: list[dict[str, Any]] = []
        pub = self.ip.display_pub

        def publish(data: dict[str, Any], metadata: Any = None, **kwargs: Any) -> None:
            self.displayed.append(data)

        pub.publish = publish  # capture rich display output as a frontend would receive it
        self.ip.displayhook.write_format_data = lambda data, md=None: self.displayed.append(data)
        self.run("%load_ext session_magics")

    def run(self, source: str) -> CellRun:
        out, err = io.StringIO(), io.StringIO()
        start = len(self.displayed)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            res = self.ip.run_cell(source, store_history=True)
        error = res.error_in_exec or res.error_before_exec
        return CellRun(res.result, error, out.getvalue(), err.getvalue(), self.displayed[start:])

    @property
    def magics(self) -> Any:
        from session_magics import magics

        return magics._instance

    def close(self) -> None:
        self.run("%unload_ext session_magics")
        dispose(self.ip)


def dispose(ip: InteractiveShell) -> None:
    """Let a test's shell go, as a kernel's end would.

    Every InteractiveShell registers atexit hooks (its own reset, its history-saving
    thread's stop, %%script's clean-up) that hold the shell, its namespace, results and
    sessions until the interpreter exits; there each shell is reset with a gc.collect()
    of its own, over a heap all of them keep large, and writes history into a temporary
    directory that is gone by then. With a hundred shells in a run, pytest sat silent for
    more than a minute after its summary line. Here each shell's hooks run (cheaply) and
    are unregistered at once."""
    history = ip.history_manager
    if history is not None:
        history.writeout_cache()
        thread = getattr(history, "save_thread", None)
        if thread is not None:  # a thread per shell, and an atexit hook of its own
            thread.stop()
            atexit.unregister(thread.stop)
            history.save_thread = None
    script = ip.magics_manager.registry.get("ScriptMagics")
    if script is not None:
        script.kill_bg_processes()
        atexit.unregister(script.kill_bg_processes)
    atexit.unregister(ip.atexit_operations)
    if InteractiveShell.initialized() and InteractiveShell.instance() is ip:
        InteractiveShell.clear_instance()


@contextlib.contextmanager
def shell_in(folder: Path, monkeypatch: Any) -> Iterator[Shell]:
    """A :class:`Shell` working in ``folder`` (no project configuration around), with the
    user's configuration in ``folder/xdg`` (``monkeypatch``: pytest's); closed on leaving."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder / "xdg"))
    shell = Shell(str(folder / "ipython"))
    try:
        yield shell
    finally:
        shell.close()


#: Where :func:`demo_shell` puts the demo API's password, for :func:`login_demo`.
DEMO_PASSWORD_ENV = "SM_DEMO_PASSWORD"


@contextlib.contextmanager
def demo_shell(folder: Path, monkeypatch: Any) -> Iterator[Shell]:
    """:func:`shell_in` ``folder``, with the demo API's password in ``$DEMO_PASSWORD_ENV``."""
    monkeypatch.setenv(DEMO_PASSWORD_ENV, "penguins")
    with shell_in(folder, monkeypatch) as shell:
        yield shell


def login_demo(shell: Shell, server: Any) -> None:
    """``%login`` to the demo API ``server`` as demo, with the password of
    :func:`demo_shell`; the login must succeed."""
    run = shell.run(f"%login {server.url} --user demo --password-env {DEMO_PASSWORD_ENV}")
    assert run.error is None, run.all_text


def login_and_run(shell: Shell, server: Any, source: str) -> CellRun:
    """:func:`login_demo` to ``server``, reset its statistics, run the cell ``source``;
    the cell must succeed."""
    login_demo(shell, server)
    server.reset_stats()
    run = shell.run(source)
    assert run.error is None, run.all_text
    return run


@contextlib.contextmanager
def shell_factory(base: Path) -> Iterator[Callable[[], Shell]]:
    """``make()`` gives a fresh :class:`Shell` (a new "kernel", its own IPython dir
    under ``base``); all of them are closed at the end."""
    shells: list[Shell] = []

    def make() -> Shell:
        shell = Shell(str(base / f"ipython{len(shells)}"))
        shells.append(shell)
        return shell

    try:
        yield make
    finally:
        for shell in shells:
            shell.close()
