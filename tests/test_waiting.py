"""Unit tests of session_magics.waiting: cell rewriting, frontend detection and the
waits outside a kernel, the Stepper, a kernel no line understands (fails before
any form), plus the message pump against a stand-in ipykernel 6 style kernel (a
real tornado queue and a real jupyter_client Session) attached to a real IPython
shell. The kernel lines against real ipykernel 6 and 7 kernels: test_kernel_lines."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_magics import waiting
from session_magics.errors import NoFrontendError
from session_magics.waiting import (
    AwaitMagics,
    frontend,
    install_transformer,
    rewrite_source,
    uninstall_transformer,
    wait_for,
    wait_for_async,
)
from tests.ipython_helpers import dispose

NAMES = {"api", "login"}


def compiles_async(src: str) -> bool:
    try:
        compile(src, "<t>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError:
        return False
    return True


# ----------------------------------------------------------------- rewriting


def test_line_magic_assignment_is_awaited() -> None:
    src = "x = get_ipython().run_line_magic('api', 'GET /x')\n"
    out = rewrite_source(src, NAMES, "runner")
    assert out == "x = (await runner('line', 'api', 'GET /x', None))\n"
    assert compiles_async(out)


def test_cell_magic_is_awaited() -> None:
    src = "get_ipython().run_cell_magic('api', '--profile p', 'GET /x\\nAccept: json\\n')\n"
    out = rewrite_source(src, NAMES, "runner")
    assert out == "(await runner('cell', 'api', '--profile p', 'GET /x\\nAccept: json\\n'))\n"


def test_dotted_runner_is_imported() -> None:
    out = rewrite_source("get_ipython().run_line_magic('login', '')\n", NAMES, "pkg.mod.run")
    assert "(await __import__('pkg.mod', fromlist=['run']).run('line', 'login', '', None))" in out


@pytest.mark.parametrize("runner", ["", "a..b", "1x", "a.b-c", "f()"])
def test_bad_runner_is_refused(runner: str) -> None:
    with pytest.raises(ValueError):
        rewrite_source("get_ipython().run_line_magic('login', '')\n", NAMES, runner)


def test_other_magics_are_left_alone() -> None:
    src = "get_ipython().run_line_magic('time', 'x = 1')\nget_ipython().run_line_magic('Api', '')\n"
    assert rewrite_source(src, NAMES, "runner") is src


@pytest.mark.parametrize(
    "src",
    [
        "def f():\n    return get_ipython().run_line_magic('login', '')\n",
        "async def f():\n    return get_ipython().run_line_magic('login', '')\n",
        "g = lambda: get_ipython().run_line_magic('login', '')\n",
        "class C:\n    x = get_ipython().run_line_magic('login', '')\n",
    ],
    ids=["def", "async-def", "lambda", "class"],
)
def test_calls_inside_scopes_are_left_alone(src: str) -> None:
    assert rewrite_source(src, NAMES, "runner") is src


def test_top_level_compound_statements_are_rewritten() -> None:
    src = (
        "for i in range(2):\n"
        "    if i:\n"
        "        get_ipython().run_line_magic('login', '')\n"
        "with open('f') as fh:\n"
        "    y = get_ipython().run_line_magic('api', 'GET /y')\n"
        "def f():\n"
        "    return get_ipython().run_line_magic('login', '')\n"
    )
    out = rewrite_source(src, NAMES, "runner")
    assert out.count("await runner(") == 2
    assert "    return get_ipython().run_line_magic('login', '')" in out
    assert compiles_async(out)


def test_only_compiling_rewrites_are_kept() -> None:
    # A comprehension inside a generator expression cannot await at top level.
    src = (
        "a = get_ipython().run_line_magic('login', '')\n"
        "b = list(get_ipython().run_line_magic('api', str(i)) for i in range(2))\n"
    )
    out = rewrite_source(src, NAMES, "runner")
    assert compiles_async(out)
    assert out.startswith("a = (await runner('line', 'login', '', None))\n")


def test_line_numbers_are_kept() -> None:
    src = "x = 1\nget_ipython().run_line_magic(\n    'login',\n    'alice',\n)\nprint(x)\n"
    out = rewrite_source(src, NAMES, "runner")
    assert "await runner('line', 'login', 'alice', None)" in out
    assert out.count("\n") == src.count("\n")
    assert out.splitlines()[-1] == "print(x)"
    assert compiles_async(out)


def test_non_ascii_before_the_call() -> None:
    src = "é = 'ü'; r = get_ipython().run_line_magic('api', 'GET /ä')\n"
    out = rewrite_source(src, NAMES, "runner")
    assert out == "é = 'ü'; r = (await runner('line', 'api', 'GET /ä', None))\n"


def test_unparsable_source_is_unchanged() -> None:
    src = "get_ipython().run_line_magic('login', '')\nif:\n"
    assert rewrite_source(src, NAMES, "runner") is src


# ------------------------------------------------------- transformer in IPython


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=cfg, ipython_dir=str(tmp_path))
    try:
        yield ip
    finally:
        uninstall_transformer(ip)
        dispose(ip)


def test_not_installed_outside_a_kernel(shell: Any) -> None:
    assert install_transformer(shell, NAMES, "runner") is False
    assert not any(isinstance(t, AwaitMagics) for t in shell.input_transformers_post)


def test_install_twice_and_uninstall(shell: Any) -> None:
    assert install_transformer(shell, NAMES, "runner", force=True)
    assert install_transformer(shell, NAMES, "runner", force=True)
    assert sum(isinstance(t, AwaitMagics) for t in shell.input_transformers_post) == 1
    uninstall_transformer(shell)
    assert not any(isinstance(t, AwaitMagics) for t in shell.input_transformers_post)
    uninstall_transformer(shell)  # nothing installed: no error


def test_shell_transforms_magic_syntax(shell: Any) -> None:
    install_transformer(shell, NAMES, "runner", force=True)
    assert "x = (await runner('line', 'api', 'GET /x', None))" in shell.transform_cell(
        "x = %api GET /x\n"
    )
    cell = shell.transform_cell("%%api --profile p\nGET /x\n")
    assert cell.startswith("(await runner('cell', 'api', '--profile p', 'GET /x\\n'))")
    assert "await" not in shell.transform_cell("%time x = 1\n")


def test_no_rewrite_without_autoawait(shell: Any) -> None:
    install_transformer(shell, NAMES, "runner", force=True)
    shell.autoawait = False
    assert "await" not in shell.transform_cell("x = %api GET /x\n")


def test_rewritten_cell_runs_the_runner(shell: Any) -> None:
    calls: list[tuple[Any, ...]] = []

    async def stand_in(kind: str, name: str, line: str, cell: str | None) -> str:
        await asyncio.sleep(0)
        calls.append((kind, name, line, cell))
        return f"{name}:{line}"

    shell.user_ns["stand_in"] = stand_in
    install_transformer(shell, NAMES, "stand_in", force=True)
    res = shell.run_cell("x = %api GET /x\n")
    assert res.success, res.error_in_exec or res.error_before_exec
    assert shell.user_ns["x"] == "api:GET /x"
    res = shell.run_cell("%%login alice\nbody\n")
    assert res.success
    assert calls == [("line", "api", "GET /x", None), ("cell", "login", "alice", "body\n")]


def test_dotted_runner_runs(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "standin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "run.py").write_text(
        "async def run_async(kind, name, line, cell):\n    return (kind, name, line, cell)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    install_transformer(shell, NAMES, "standin_pkg.run.run_async", force=True)
    res = shell.run_cell("y = %login bob\n")
    assert res.success, res.error_in_exec or res.error_before_exec
    assert shell.user_ns["y"] == ("line", "login", "bob", None)


# ------------------------------------------------------------------ frontend


class _Stdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_MAGICS_FRONTEND", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)


def test_frontend_terminal_and_none(no_overrides: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(True))
    assert frontend() == "terminal"
    monkeypatch.setattr(sys, "stdin", _Stdin(False))
    assert frontend() == "none"
    monkeypatch.setattr(sys, "stdin", None)
    assert frontend() == "none"


def test_frontend_override(no_overrides: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(False))
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "Widgets")
    assert frontend() == "widgets"
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "bogus")
    assert frontend() == "none"


def test_no_kernel_here() -> None:
    assert waiting.kernel_wait_style() == "none"
    assert waiting.preferred_wait() == "sync"


def test_import_is_cheap() -> None:
    code = (
        "import sys, session_magics.waiting\n"
        "heavy = {'ipywidgets', 'requests', 'keyring', 'ipykernel', 'IPython', 'zmq', 'asyncio'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------- waiting outside a kernel


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "terminal")


def test_wait_for_times_out(terminal: None) -> None:
    polls = []
    started = time.monotonic()
    assert wait_for(lambda: polls.append(1) is not None, 0.2, poll=0.01) is False
    assert time.monotonic() - started >= 0.2  # not before the timeout
    assert len(polls) >= 2  # and it kept polling meanwhile


def test_wait_for_zero_timeout_checks_once(terminal: None) -> None:
    assert wait_for(lambda: True, 0) is True
    assert wait_for(lambda: False, 0) is False


def test_wait_for_sees_done(terminal: None) -> None:
    flag = threading.Event()
    threading.Timer(0.1, flag.set).start()
    assert wait_for(flag.is_set, 60, poll=0.01) is True  # True: done() seen, not the timeout


def test_wait_for_async_outside_kernel(terminal: None) -> None:
    flag = threading.Event()
    threading.Timer(0.1, flag.set).start()
    assert asyncio.run(wait_for_async(flag.is_set, 10, poll=0.01)) is True
    assert asyncio.run(wait_for_async(lambda: False, 0.1, poll=0.01)) is False


def test_nobody_to_answer_fails_fast(no_overrides: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(False))
    polls: list[int] = []

    def done() -> bool:
        polls.append(1)
        return False

    with pytest.raises(NoFrontendError):
        wait_for(done, None)
    with pytest.raises(NoFrontendError):
        asyncio.run(wait_for_async(done, None))
    assert polls == []  # failed before the first poll: no waiting at all
    assert wait_for(lambda: True, None, need_frontend=False) is True


# -------------------------------------- the pump against a stand-in 6.x kernel


class FakeStream:
    """Stands in for the kernel's shell ZMQStream: flush() delivers pending messages."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.pending: list[list[bytes]] = []

    def flush(self, *args: Any) -> int:
        count = len(self.pending)
        while self.pending:
            self.kernel.schedule_dispatch(self.kernel.dispatch_shell, self.pending.pop(0))
        return count


class FakeKernel:
    """The parts of an ipykernel 6.29 kernel that the pump uses."""

    def __init__(self) -> None:
        from jupyter_client.session import Session
        from tornado.queues import Queue

        self.session = Session(key=b"k")
        self.msg_queue: Any = Queue()
        self.shell_stream = FakeStream(self)
        self.handled: list[str] = []
        self.counter = 0
        self.parent: dict[str, Any] = {"header": {"msg_id": "cell"}, "metadata": {}}
        self._parent_ident = {"shell": [b"cell"]}
        self.on_comm = lambda: None

    def schedule_dispatch(self, dispatch: Any, *args: Any) -> None:
        self.counter += 1
        self.msg_queue.put_nowait((self.counter, dispatch, args))

    async def dispatch_shell(self, msg: list[Any]) -> None:
        idents, parts = self.session.feed_identities(msg, copy=True)
        message = self.session.deserialize(parts, content=True)
        self.parent = message
        self.handled.append(message["header"]["msg_type"])
        if message["header"]["msg_type"] == "comm_msg":
            self.on_comm()

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return self.parent

    def set_parent(self, ident: Any, parent: dict[str, Any], channel: str = "shell") -> None:
        self.parent = parent
        self._parent_ident["shell"] = ident

    def raw(self, msg_type: str) -> list[bytes]:
        msg = self.session.msg(msg_type, content={})
        return [b"ident", *self.session.serialize(msg)]

    def queued_types(self) -> list[str]:
        out = []
        for _, dispatch, args in list(self.msg_queue._queue):
            if dispatch.__name__ != "dispatch_shell":
                out.append(dispatch.__name__)
                continue
            _, parts = self.session.feed_identities(args[0], copy=True)
            out.append(self.session.deserialize(parts, content=False)["header"]["msg_type"])
        return out


@pytest.fixture
def fake_kernel(shell: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKernel]:
    """The stand-in kernel as the shell's kernel, as in a kernel process."""
    import ipykernel  # noqa: F401  (imported in every kernel process)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    kernel = FakeKernel()
    shell.kernel = kernel
    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    try:
        yield kernel
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_queue_style_detected(fake_kernel: FakeKernel) -> None:
    assert waiting.kernel_wait_style() == "queue"
    assert waiting.preferred_wait() == "sync"


def test_sync_pump_handles_comms_and_keeps_the_rest_in_order(fake_kernel: FakeKernel) -> None:
    k = fake_kernel
    clicked = []
    k.on_comm = lambda: clicked.append(True)
    k.schedule_dispatch(k.dispatch_shell, k.raw("execute_request"))  # queued before the wait
    k.shell_stream.pending += [
        k.raw("execute_request"),
        k.raw("comm_msg"),
        k.raw("complete_request"),
        k.raw("execute_request"),
    ]
    cell_parent = k.parent
    assert wait_for(lambda: bool(clicked), 5, poll=0.01) is True
    assert k.handled == ["comm_msg"]
    assert k.parent is cell_parent  # output still goes to the waiting cell
    assert k.queued_types() == [
        "execute_request",
        "execute_request",
        "complete_request",
        "execute_request",
    ]


def test_sync_pump_feeds_an_idle_getter(fake_kernel: FakeKernel) -> None:
    k = fake_kernel
    getter = k.msg_queue.get()  # the kernel's dispatcher, parked in msg_queue.get()
    clicked = []
    k.on_comm = lambda: clicked.append(True)
    k.shell_stream.pending += [k.raw("comm_msg"), k.raw("execute_request")]
    assert wait_for(lambda: bool(clicked), 5, poll=0.01) is True
    assert getter.done() and getter.result()[1].__name__ == "_noop"
    assert k.handled == ["comm_msg"]
    assert k.queued_types() == ["execute_request"]


def test_sync_pump_restores_queue_on_timeout(fake_kernel: FakeKernel) -> None:
    k = fake_kernel
    k.shell_stream.pending += [k.raw("execute_request"), k.raw("kernel_info_request")]
    assert wait_for(lambda: False, 0.05, poll=0.01) is False
    assert k.handled == ["kernel_info_request"]
    assert k.queued_types() == ["execute_request"]


def test_async_pump_handles_comms(fake_kernel: FakeKernel) -> None:
    k = fake_kernel
    clicked = []
    k.on_comm = lambda: clicked.append(True)

    async def scenario() -> bool:
        async def browser() -> None:
            await asyncio.sleep(0.05)
            k.schedule_dispatch(k.dispatch_shell, k.raw("execute_request"))
            k.schedule_dispatch(k.dispatch_shell, k.raw("comm_msg"))

        task = asyncio.ensure_future(browser())
        result = await wait_for_async(lambda: bool(clicked), 5, poll=0.01)
        await task
        return result

    assert asyncio.get_event_loop().run_until_complete(scenario()) is True
    assert k.handled == ["comm_msg"]
    assert k.queued_types() == ["execute_request"]


# ------------------------------------------------- a kernel no line understands


class NotUnderstood:
    """A kernel (it has a session, so the shell runs in a kernel) with neither
    ipykernel 6's message queue nor ipykernel 7's main-thread stream."""

    def __init__(self) -> None:
        from jupyter_client.session import Session

        self.session = Session(key=b"k")

    async def dispatch_shell(self, msg: Any) -> None:
        raise AssertionError("never dispatched")

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return {"header": {"msg_type": "execute_request"}, "metadata": {"cellId": "c"}}


@pytest.fixture
def unknown_kernel(shell: Any, monkeypatch: pytest.MonkeyPatch) -> NotUnderstood:
    import ipykernel  # noqa: F401

    monkeypatch.delenv("SESSION_MAGICS_FRONTEND", raising=False)
    shell.kernel = NotUnderstood()
    return shell.kernel


def test_unknown_kernel_is_detected(unknown_kernel: NotUnderstood) -> None:
    assert frontend() == "widgets"  # the cell id says a widget frontend is there
    assert waiting.kernel_wait_style() == "unknown"
    assert waiting.preferred_wait() == "sync"
    with pytest.raises(waiting.CannotWaitHere, match="could never be answered"):
        waiting.check_can_wait()


def test_unknown_kernel_fails_before_waiting(unknown_kernel: NotUnderstood) -> None:
    polls: list[int] = []

    def done() -> bool:
        polls.append(1)
        return False

    with pytest.raises(waiting.CannotWaitHere, match="--password-env"):
        wait_for(done, 5)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(waiting.CannotWaitHere):
            loop.run_until_complete(wait_for_async(done, 5))
    finally:
        loop.close()
    assert polls == []  # no wait for the timeout: not one poll


def test_unknown_kernel_login_shows_no_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kr: Any
) -> None:
    """%login that would ask with a form fails at once with CannotWaitHere, and no
    form is displayed (one could never be answered there)."""
    import ipykernel  # noqa: F401

    from tests.ipython_helpers import shell_factory

    monkeypatch.setenv("SESSION_MAGICS_FRONTEND", "widgets")
    with shell_factory(tmp_path) as make:
        sh = make()
        sh.ip.kernel = NotUnderstood()
        run = sh.run("%login http://127.0.0.1:9 --user demo --no-keyring")
    assert isinstance(run.error, waiting.CannotWaitHere), run.all_text
    assert run.displayed == []


# ------------------------------------------------------------------- the Stepper


class Step:
    """An awaitable a coroutine yields once, like a pending future; done() when released."""

    def __init__(self) -> None:
        self.released = False

    def done(self) -> bool:
        return self.released

    def __await__(self) -> Any:
        yield self


def test_stepper_keeps_a_handlers_context_across_its_steps() -> None:
    import contextvars

    from session_magics.waiting.stepper import Stepper

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="cell")
    step = Step()
    seen: list[str] = []

    async def handler() -> None:
        var.set("handler")
        await step
        seen.append(var.get())

    stepper = Stepper()
    stepper.run(handler())
    assert var.get() == "cell"  # the waiting cell's context is not changed
    stepper.poll()
    assert seen == []  # still suspended
    step.released = True
    stepper.poll()
    assert seen == ["handler"]  # resumed in its own context, not a fresh copy
    assert var.get() == "cell"


def test_stepper_hands_unfinished_handlers_to_the_event_loop_in_their_context() -> None:
    import contextvars

    from session_magics.waiting.stepper import Stepper

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="cell")
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        future = loop.create_future()

        async def handler() -> None:
            var.set("handler")
            await future
            seen.append(var.get())

        stepper = Stepper()
        stepper.run(handler())
        stepper.close()  # the wait ended with the handler suspended
        future.set_result(None)
        loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop)))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert seen == ["handler"]


def test_stepper_logs_errors_but_lets_an_interrupt_through(capfd: pytest.CaptureFixture[str]) -> None:
    from session_magics.waiting.stepper import Stepper

    async def broken() -> None:
        raise ValueError("a broken widget handler")

    async def interrupted() -> None:
        raise KeyboardInterrupt

    stepper = Stepper()
    stepper.run(broken())  # logged, the wait goes on
    assert "a broken widget handler" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        stepper.run(interrupted())


# -- the kernel's interrupt (SIGINT) while a wait runs, outside a kernel --------------


def _interrupting_once() -> Any:
    """A ``done`` that sends this process SIGINT the first time it is asked (as the
    kernel's interrupt arrives while the form decides), and is never done."""
    import signal

    sent: list[bool] = []

    def done() -> bool:
        if not sent:
            sent.append(True)
            signal.raise_signal(signal.SIGINT)
        return False

    return done


def test_an_interrupt_ends_a_synchronous_wait_whatever_handler_the_cell_has() -> None:
    """Also where the handler in effect only asks an event loop to cancel the cell
    (ipykernel's, in a cell that awaits): the loop is blocked by the wait. The cell's
    handler is put back afterwards."""
    import signal

    asked: list[int] = []

    def cancel_later(signum: int, frame: Any) -> None:  # as ipykernel's _cancel_on_sigint
        asked.append(signum)

    before = signal.signal(signal.SIGINT, cancel_later)
    try:
        with pytest.raises(KeyboardInterrupt):
            wait_for(_interrupting_once(), 30, need_frontend=False)  # 30 s: lost, not slow
        assert signal.getsignal(signal.SIGINT) is cancel_later
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_interrupt_that_only_cancels_the_task_still_ends_an_asynchronous_wait() -> None:
    """asyncio.run, as ipykernel for an awaiting cell, turns SIGINT into a cancellation
    of the task: the wait ends with KeyboardInterrupt, not CancelledError."""
    import signal

    async def main() -> str:
        try:
            await wait_for_async(_interrupting_once(), None, poll=0.01, need_frontend=False)
        except KeyboardInterrupt:
            return "KeyboardInterrupt"
        except asyncio.CancelledError:
            return "CancelledError"
        return "done"

    before = signal.getsignal(signal.SIGINT)
    assert asyncio.run(main()) == "KeyboardInterrupt"
    assert signal.getsignal(signal.SIGINT) is before


def test_other_cancellations_of_an_asynchronous_wait_stay_cancellations() -> None:
    async def main() -> str:
        try:
            await asyncio.wait_for(wait_for_async(lambda: False, None, poll=0.01, need_frontend=False), 0.05)
        except TimeoutError:
            return "timed out"
        return "done"

    assert asyncio.run(main()) == "timed out"


def test_an_interrupt_inside_interrupts_deferred_takes_effect_at_its_end() -> None:
    """A real SIGINT sent to this process inside the block: the block runs to its
    end, then the interrupt is raised as the handler in effect before would (here
    Python's default: KeyboardInterrupt); afterwards that handler is in place again."""
    import os
    import signal

    from session_magics.waiting.base import interrupts_deferred

    before = signal.getsignal(signal.SIGINT)
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        steps.append("after the signal")  # the signal is handled before this line runs
        steps.append("the block's end")
    assert steps == ["after the signal", "the block's end"]
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts_deferred():  # no signal: nothing raised
        steps.append("quiet")
    assert steps[-1] == "quiet"
