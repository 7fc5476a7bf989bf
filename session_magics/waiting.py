"""Wait for an answer from a widget form while a notebook cell keeps running.

When a session expires in the middle of a cell, the magics show a login form in
that cell's output and must wait, with the cell still running, until the user
clicks "Log in" (or "Cancel", or a timeout passes). While the cell waits, the
kernel has to keep handling the widget messages the browser sends (the typed
password, the click), but must not start the cells queued below it (Run All):
those run after the waiting cell has finished, in their order.

How that is done depends on what the running kernel can do; it is decided by
looking at the kernel object, not at its version string:

* **Queue kernels** (ipykernel 6.x): shell messages go through ``kernel.msg_queue``
  and the dispatcher that runs the current cell is the only consumer. While
  waiting we take messages off that queue ourselves, handle widget/comm messages
  at once and set every other request (``execute_request`` of the cells below,
  completions...) aside; when the wait ends they are put back at the head of the
  queue, so the kernel runs them afterwards, in order. A synchronous wait first
  moves pending messages from the shell socket into the queue; an asynchronous
  wait lets the event loop do that. If the kernel's dispatcher is parked in an
  idle ``msg_queue.get()`` (possible when the current cell is not being run by
  that dispatcher), a synchronous wait first hands it a no-op item, otherwise the
  next message would be delivered straight to that parked getter and stay there
  until the cell ends.
* **Stream kernels** (ipykernel 7.x): shell messages reach the main thread through
  a ZMQ stream whose callback starts ``shell_main``. Kernels whose
  ``dispatch_shell`` accepts ``concurrent=`` (7.4 and later) dispatch comm
  messages concurrently while an async cell awaits, so an async wait only needs
  to sleep. A synchronous wait cannot let the event loop run, so it reads that
  stream itself (its callback is swapped for the duration), handles comm
  messages at once and sets the other messages aside; they are handed to the
  kernel's own callback, in order, when the wait ends.

The asynchronous path is used for cells rewritten by :func:`install_transformer`,
which turns top-level calls of our magics into ``await runner(...)``.

``frontend()`` tells whether anybody can answer a form at all. Outside a kernel
(plain Python, terminal IPython) the waits just poll ``done()``.

This module imports nothing heavy at import time: IPython, ipykernel, zmq and
asyncio are looked up lazily.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal

from .errors import NoFrontendError, SessionMagicsError

__all__ = [
    "FRONTEND_ENV",
    "AwaitMagics",
    "CannotWaitHere",
    "Frontend",
    "frontend",
    "install_transformer",
    "kernel_wait_style",
    "preferred_wait",
    "rewrite_source",
    "uninstall_transformer",
    "wait_for",
    "wait_for_async",
]

Frontend = Literal["widgets", "terminal", "none"]

#: Environment variable that overrides :func:`frontend` (``widgets``, ``terminal``
#: or ``none``), for frontends the hints below do not recognise.
FRONTEND_ENV = "SESSION_MAGICS_FRONTEND"

# Shell messages that are handled while a cell waits. Everything else (above all
# execute_request) is set aside and handled by the kernel after the cell.
_DISPATCH_NOW = frozenset({"comm_open", "comm_msg", "comm_close", "comm_info_request", "kernel_info_request"})


class CannotWaitHere(SessionMagicsError):
    """This kernel cannot handle widget messages while this (synchronous) code waits."""


# --------------------------------------------------------------------------- kernel


def _ipython() -> Any | None:
    mod = sys.modules.get("IPython")
    if mod is None:
        return None
    try:
        return mod.get_ipython()
    except Exception:
        return None


def _kernel(*, any_thread: bool = False) -> Any | None:
    """The ipykernel kernel object whose main shell runs this code, if any.

    Unless ``any_thread``, None in other threads too (a user thread, a kernel
    subshell): only the main shell's code may touch the kernel's message
    plumbing, so there the waits just poll.
    """
    if "ipykernel" not in sys.modules:
        return None
    import threading

    if not any_thread and threading.current_thread() is not threading.main_thread():
        return None
    kernel = getattr(_ipython(), "kernel", None)
    if kernel is None or not hasattr(kernel, "session"):
        return None
    return kernel


def _current_parent(kernel: Any) -> dict[str, Any]:
    try:
        parent = kernel.get_parent("shell")
    except Exception:
        return {}
    return parent if isinstance(parent, dict) else {}


def _queue_of(kernel: Any) -> Any | None:
    """``kernel.msg_queue`` when shell messages go through it (ipykernel 6 style)."""
    queue = getattr(kernel, "msg_queue", None)
    needed = ("get_nowait", "put_nowait", "qsize")
    if queue is None or not all(hasattr(queue, name) for name in needed):
        return None
    if getattr(kernel, "shell_stream", None) is None:
        return None
    return queue


def _main_stream(kernel: Any) -> Any | None:
    """The ZMQ stream delivering shell messages to the main thread (ipykernel 7 style)."""
    thread = getattr(kernel, "shell_channel_thread", None)
    if thread is not None:
        manager = getattr(thread, "manager", None)
        get_pair = getattr(manager, "get_shell_channel_to_subshell_pair", None)
        stream = None
        if get_pair is not None:
            with contextlib.suppress(Exception):
                stream = getattr(get_pair(None), "to_stream", None)
        if stream is None:
            pair = getattr(manager, "_shell_channel_to_main", None)
            stream = getattr(pair, "to_stream", None)
    else:
        stream = getattr(kernel, "shell_stream", None)
    if stream is None or not hasattr(stream, "flush") or not hasattr(stream, "on_recv"):
        return None
    if getattr(stream, "_recv_callback", None) is None:
        return None
    return stream


def _dispatches_comms_concurrently(kernel: Any) -> bool:
    """True when comm messages are dispatched while an async cell awaits (ipykernel >= 7.4)."""
    import inspect

    try:
        params = inspect.signature(kernel.dispatch_shell).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "concurrent" in params


def kernel_wait_style() -> Literal["none", "queue", "stream", "unknown"]:
    """How waiting works in the running kernel: ``none`` (no kernel), ``queue``
    (ipykernel 6 style), ``stream`` (ipykernel 7 style) or ``unknown``."""
    kernel = _kernel()
    if kernel is None:
        return "none"
    if _queue_of(kernel) is not None:
        return "queue"
    if _main_stream(kernel) is not None:
        return "stream"
    return "unknown"


def preferred_wait() -> Literal["sync", "async"]:
    """``async`` where the kernel itself handles widget messages while an async cell
    awaits (so cells calling our magics should be rewritten to ``await``), else ``sync``."""
    kernel = _kernel()
    if kernel is not None and _queue_of(kernel) is None and _dispatches_comms_concurrently(kernel):
        return "async"
    return "sync"


# ------------------------------------------------------------------------- frontend


def frontend() -> Frontend:
    """Who could answer a login form here.

    * ``"widgets"``: running in an ipykernel kernel with a widget frontend
      plausibly attached. This is a hint, not a proof: JupyterLab and Notebook
      send ``metadata.cellId`` with each execute_request and jupyter_server sets
      ``JPY_SESSION_NAME`` in the kernels it starts; plain nbclient/papermill do
      neither. A papermill run started from inside a notebook's kernel inherits
      that kernel's ``JPY_SESSION_NAME``; where the launching process's
      environment can be read (Linux ``/proc``), such an inherited name is not
      taken as a frontend.
    * ``"terminal"``: terminal IPython or plain Python with a terminal on stdin.
    * ``"none"``: nobody can answer (nbclient, papermill, scheduled runs...).

    ``SESSION_MAGICS_FRONTEND=widgets|terminal|none`` overrides the guess.
    """
    forced = os.environ.get(FRONTEND_ENV, "").strip().lower()
    if forced in ("widgets", "terminal", "none"):
        return forced  # type: ignore[return-value]
    kernel = _kernel(any_thread=True)
    if kernel is not None:
        metadata = _current_parent(kernel).get("metadata") or {}
        if isinstance(metadata, dict) and metadata.get("cellId"):
            return "widgets"
        if os.environ.get("JPY_SESSION_NAME") and not _session_name_inherited():
            return "widgets"
        return "none"
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        interactive = False
    return "terminal" if interactive else "none"


def _session_name_inherited() -> bool:
    """Whether this kernel's ``JPY_SESSION_NAME`` was inherited rather than set for it.

    jupyter_server adds the variable to the environment of the kernels it starts
    only; its own environment lacks it. jupyter_client puts the launching
    process's pid in ``JPY_PARENT_PID``. So when the launcher's environment holds
    ``JPY_SESSION_NAME`` too, the launcher is itself a kernel's child (papermill
    or nbclient run from a notebook) and no frontend comes with the name. Only
    the presence of the name is checked; nothing else is kept. Unknown (not
    Linux, no permission, no such process) counts as not inherited.
    """
    parent = os.environ.get("JPY_PARENT_PID", "")
    if not parent.isdigit() or int(parent) == os.getpid():
        return False
    try:
        with open(f"/proc/{int(parent)}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return False
    return environ.startswith(b"JPY_SESSION_NAME=") or b"\0JPY_SESSION_NAME=" in environ


def _no_frontend() -> NoFrontendError:
    return NoFrontendError(
        "Nobody can answer a login form here: no widget frontend is attached to this "
        "kernel (e.g. nbclient, papermill or a scheduled run) and there is no terminal. "
        "Provide the credentials another way, or set SESSION_MAGICS_FRONTEND=widgets "
        "if this frontend does show widgets."
    )


# ------------------------------------------------------------------ message pumps


def _frame_bytes(frame: Any) -> bytes:
    data = getattr(frame, "bytes", frame)
    return bytes(data)


def _msg_type(kernel: Any, frames: Any) -> str | None:
    """The msg_type of a raw shell message, read from its header only (no side effects)."""
    try:
        frames = list(frames)
        zero_copy = bool(frames) and hasattr(frames[0], "bytes")  # zmq.Frame vs bytes
        _idents, parts = kernel.session.feed_identities(frames, copy=not zero_copy)
        header = kernel.session.unpack(_frame_bytes(parts[1]))
    except Exception:
        return None
    if not isinstance(header, dict):
        return None
    msg_type = header.get("msg_type")
    return msg_type if isinstance(msg_type, str) else None


@contextlib.contextmanager
def _kept_parent(kernel: Any) -> Iterator[None]:
    """Dispatching a message makes it the kernel's "parent" (where output goes):
    put the waiting cell's parent back afterwards."""
    parent = _current_parent(kernel)
    try:
        ident = kernel._parent_ident["shell"]
    except Exception:
        ident = None
    try:
        yield
    finally:
        if parent:
            with contextlib.suppress(Exception):
                kernel.set_parent(ident, parent, "shell")


@contextlib.contextmanager
def _busy_while_waiting(kernel: Any) -> Iterator[None]:
    """Keep the kernel reported busy for the whole wait, whatever else it answers.

    Frontends and Jupyter Server show the last status the kernel published:
    JupyterLab's status bar, Notebook 7's tab icon, and the ``execution_state``
    of ``/api/sessions`` (what an idle-kernel culler acts on). While the cell
    waits, the kernel answers other messages, each ending with an ``idle``: the
    widget messages (handled by us, or by ipykernel 7 on a subshell thread, where
    its ``idle`` comes after the handler returns), and control requests such as
    the ``create_subshell_request`` JupyterLab sends as soon as the form's widgets
    appear. So for the duration of the wait every ``idle`` the kernel publishes
    for another message is followed, on the same thread and so in order on IOPub,
    by a ``busy`` whose parent is the waiting cell's ``execute_request``; and that
    ``busy`` is said once when the wait starts. The cell's own ``idle`` comes
    when it ends, after the wait.

    Touches ``kernel._publish_status`` (ipykernel 6 and 7 publish every status
    through it): wrapped on the instance for the wait, restored afterwards.
    """
    cell = _current_parent(kernel)
    header = cell.get("header")
    publish = getattr(kernel, "_publish_status", None)
    if (
        not isinstance(header, dict)
        or header.get("msg_type") != "execute_request"
        or publish is None
        or not callable(publish)
    ):
        yield
        return
    had_own = "_publish_status" in vars(kernel)

    def status_then_busy(status: str, channel: str, parent: Any = None) -> None:
        # Every idle while the wait lasts is followed by the cell's busy, whatever its
        # parent says: the cell's own idle comes only after the wait, when this wrapper
        # is gone, and a parent read from the kernel's per-channel state can be stale
        # when another thread publishes meanwhile (seen on ipykernel 6.29).
        publish(status, channel, parent)
        if status == "idle":
            with contextlib.suppress(Exception):
                publish("busy", "shell", parent=cell)

    kernel._publish_status = status_then_busy
    with contextlib.suppress(Exception):
        publish("busy", "shell", parent=cell)
    try:
        yield
    finally:
        if had_own:
            kernel._publish_status = publish
        else:
            with contextlib.suppress(AttributeError):
                del kernel._publish_status


async def _noop() -> None:
    return None


def _log_error(what: str) -> None:
    import traceback

    print(f"session-magics: error while {what}:", file=sys.__stderr__)
    traceback.print_exc(file=sys.__stderr__)


class _Stepper:
    """Runs coroutines from synchronous code, on the current thread.

    A comm handler normally finishes without suspending; one that does suspend is
    resumed later and, if still unfinished when the wait ends, handed to the
    event loop."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, Any]] = []

    def run(self, coro: Any) -> None:
        self._advance(coro, None)

    def _advance(self, coro: Any, waiting: Any) -> None:
        import contextvars

        ctx = contextvars.copy_context()
        try:
            waiting = ctx.run(coro.send, None)
        except StopIteration:
            return
        except BaseException:
            _log_error("handling a widget message")
            return
        self._pending.append((coro, waiting))

    def poll(self) -> None:
        pending, self._pending = self._pending, []
        for coro, waiting in pending:
            done = getattr(waiting, "done", None)
            if waiting is None or (done is not None and done()):
                self._advance(coro, waiting)
            else:
                self._pending.append((coro, waiting))

    def close(self) -> None:
        import asyncio

        pending, self._pending = self._pending, []
        for coro, waiting in pending:
            asyncio.ensure_future(_resume(coro, waiting))


async def _resume(coro: Any, waiting: Any) -> None:
    import asyncio

    while True:
        if waiting is None:
            await asyncio.sleep(0)
        else:
            await waiting
        try:
            waiting = coro.send(None)
        except StopIteration:
            return


class _QueuePump:
    """Handles comm messages from ``kernel.msg_queue`` and sets the rest aside."""

    def __init__(self, kernel: Any, queue: Any) -> None:
        self.kernel = kernel
        self.queue = queue
        self.stash: list[Any] = []
        self.stepper = _Stepper()

    def _classify(self, item: Any) -> tuple[Any, tuple[Any, ...]] | None:
        """(dispatch, args) if the item is a shell message to handle now, else None."""
        if not (isinstance(item, tuple) and len(item) == 3):
            return None
        _, dispatch, args = item
        if getattr(dispatch, "__name__", "") != "dispatch_shell":
            return None
        if getattr(dispatch, "__self__", None) is not self.kernel or not args:
            return None
        if _msg_type(self.kernel, args[0]) not in _DISPATCH_NOW:
            return None
        return dispatch, tuple(args)

    def _feed_idle_getter(self) -> None:
        getters = getattr(self.queue, "_getters", None)
        if getters and any(not f.done() for f in list(getters)):
            self.kernel.schedule_dispatch(_noop)

    def _due(self) -> Iterator[tuple[Any, tuple[Any, ...]]]:
        """The queued messages to handle now, in order; the others are set aside."""
        while self.queue.qsize():
            item = self.queue.get_nowait()
            handle = self._classify(item)
            if handle is None:
                self.stash.append(item)
            else:
                yield handle

    def pull_sync(self) -> None:
        self._feed_idle_getter()
        self.stepper.poll()
        self.kernel.shell_stream.flush()
        for dispatch, args in self._due():
            with _kept_parent(self.kernel):
                self.stepper.run(dispatch(*args))

    async def pull_async(self) -> None:
        for dispatch, args in self._due():
            with _kept_parent(self.kernel):
                try:
                    await dispatch(*args)
                except Exception:
                    _log_error("handling a widget message")

    def close(self) -> None:
        rest = []
        while self.queue.qsize():
            rest.append(self.queue.get_nowait())
        for item in self.stash + rest:
            self.queue.put_nowait(item)
        self.stash = []
        self.stepper.close()


class _StreamPump:
    """Reads the main-thread shell stream itself: comm messages are handled at once,
    the others are handed to the kernel's own callback, in order, at the end."""

    def __init__(self, kernel: Any, stream: Any) -> None:
        self.kernel = kernel
        self.stream = stream
        self.callback = stream._recv_callback
        self.copy = bool(getattr(stream, "_recv_copy", False))
        self.stash: list[Any] = []
        self.stepper = _Stepper()
        self.concurrent = _dispatches_comms_concurrently(kernel)
        stream.on_recv(self._on_recv, copy=False)

    def _on_recv(self, frames: Any) -> None:
        if _msg_type(self.kernel, frames) not in _DISPATCH_NOW:
            self.stash.append(frames)
            return
        kwargs: dict[str, Any] = {"subshell_id": None}
        if self.concurrent:
            kwargs["concurrent"] = True
        with _kept_parent(self.kernel):
            self.stepper.run(self.kernel.dispatch_shell(frames, **kwargs))

    def pull_sync(self) -> None:
        import zmq

        self.stepper.poll()
        self.stream.flush(zmq.POLLIN)

    async def pull_async(self) -> None:
        # The event loop runs and feeds _on_recv; only resume suspended handlers.
        self.stepper.poll()

    def close(self) -> None:
        import asyncio

        self.stream.on_recv(self.callback, copy=self.copy)
        stash, self.stash = self.stash, []
        for frames in stash:
            result = self.callback(frames)
            if isinstance(result, Awaitable):
                asyncio.ensure_future(result)
        self.stepper.close()


def _sync_pump(kernel: Any) -> _QueuePump | _StreamPump:
    queue = _queue_of(kernel)
    if queue is not None:
        return _QueuePump(kernel, queue)
    stream = _main_stream(kernel)
    if stream is not None:
        return _StreamPump(kernel, stream)
    raise CannotWaitHere(
        "This kernel cannot handle widget messages while a cell waits synchronously. "
        "Call the magic at the top level of a cell (not inside a function), so that "
        "the cell can wait asynchronously."
    )


def _async_pump(kernel: Any) -> _QueuePump | _StreamPump | None:
    queue = _queue_of(kernel)
    if queue is not None:
        return _QueuePump(kernel, queue)
    if _dispatches_comms_concurrently(kernel):
        return None  # the kernel itself handles comm messages while we await
    stream = _main_stream(kernel)
    if stream is not None:
        return _StreamPump(kernel, stream)
    return None


# ----------------------------------------------------------------------- waiting


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def wait_for(
    done: Callable[[], bool],
    timeout: float | None,
    *,
    poll: float = 0.05,
    need_frontend: bool = True,
) -> bool:
    """Block until ``done()`` is true, handling widget messages meanwhile.

    Returns True when ``done()`` became true, False when ``timeout`` seconds (None:
    no limit) passed first. Cells queued below the waiting one (Run All) are not
    started before this returns; they run afterwards, in order.

    Raises :class:`~session_magics.errors.NoFrontendError` at once when
    ``need_frontend`` is true and :func:`frontend` says nobody can answer, and
    :class:`CannotWaitHere` when this kernel cannot handle widget messages from a
    synchronous wait (use :func:`wait_for_async` from an async cell there).
    """
    if need_frontend and frontend() == "none":
        raise _no_frontend()
    deadline = _deadline(timeout)
    kernel = _kernel()
    pump = _sync_pump(kernel) if kernel is not None else None
    with _busy_while_waiting(kernel) if kernel is not None else contextlib.nullcontext():
        try:
            while True:
                if pump is not None:
                    pump.pull_sync()
                if done():
                    return True
                if _expired(deadline):
                    return False
                time.sleep(poll)
        finally:
            if pump is not None:
                pump.close()


_COMM_TYPES = ("comm_open", "comm_msg", "comm_close")


@contextlib.contextmanager
def _idle_after_comms(kernel: Any) -> Iterator[None]:
    """Answer each comm message handled during an async wait with an ``idle`` status.

    Kernels that dispatch comm messages concurrently while an async cell awaits
    (ipykernel 7.4) publish no busy/idle status for them. ipywidgets' frontend sends
    at most one update per widget until it sees that ``idle``; without it the next
    update (a second password attempt, each further keystroke of a user name) stays
    in the browser. Publishing the idle status for the message we handled lets them
    through.
    """
    handlers = getattr(kernel, "shell_handlers", None)
    publish = getattr(kernel, "_publish_status", None)
    if not isinstance(handlers, dict) or publish is None:
        yield
        return
    originals = {t: handlers[t] for t in _COMM_TYPES if t in handlers}

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        def idle(msg: Any) -> None:
            # Looked up at call time: _busy_while_waiting follows it with "busy".
            with contextlib.suppress(Exception):
                kernel._publish_status("idle", "shell", parent=msg)

        def wrapped(stream: Any, idents: Any, msg: Any) -> Any:
            result = handler(stream, idents, msg)
            if inspect.isawaitable(result):

                async def finish() -> None:
                    try:
                        await result
                    finally:
                        idle(msg)

                return finish()
            idle(msg)
            return result

        return wrapped

    for msg_type, handler in originals.items():
        handlers[msg_type] = wrap(handler)
    try:
        yield
    finally:
        handlers.update(originals)


async def wait_for_async(
    done: Callable[[], bool],
    timeout: float | None,
    *,
    poll: float = 0.05,
    need_frontend: bool = True,
) -> bool:
    """Await until ``done()`` is true, handling widget messages meanwhile.

    The asynchronous twin of :func:`wait_for`, for cells that ``await`` (see
    :func:`install_transformer`); same return value and errors, except that it
    works on every kernel this module knows.
    """
    import asyncio

    if need_frontend and frontend() == "none":
        raise _no_frontend()
    deadline = _deadline(timeout)
    kernel = _kernel()
    pump = _async_pump(kernel) if kernel is not None else None
    concurrent = kernel is not None and pump is None and _dispatches_comms_concurrently(kernel)
    with (
        _busy_while_waiting(kernel) if kernel is not None else contextlib.nullcontext(),
        _idle_after_comms(kernel) if concurrent else contextlib.nullcontext(),
    ):
        try:
            while True:
                if pump is not None:
                    await pump.pull_async()
                if done():
                    return True
                if _expired(deadline):
                    return False
                await asyncio.sleep(poll)
        finally:
            if pump is not None:
                pump.close()


# ------------------------------------------------------------------- transformer

_MAGIC_METHODS = {"run_line_magic": "line", "run_cell_magic": "cell"}


def _magic_call(node: ast.AST, names: set[str] | frozenset[str]) -> str | None:
    """'line'/'cell' if node is ``get_ipython().run_*_magic('<one of names>', ...)``."""
    if not isinstance(node, ast.Call) or node.keywords:
        return None
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr not in _MAGIC_METHODS:
        return None
    owner = func.value
    if not (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
        and not owner.args
        and not owner.keywords
    ):
        return None
    kind = _MAGIC_METHODS[func.attr]
    if len(node.args) != (2 if kind == "line" else 3):
        return None
    name = node.args[0]
    if not (isinstance(name, ast.Constant) and name.value in names):
        return None
    return kind


def _top_level_calls(tree: ast.AST, names: set[str] | frozenset[str]) -> list[tuple[ast.Call, str]]:
    """Magic calls outside any function, lambda or class body, in source order."""
    found: list[tuple[ast.Call, str]] = []
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, scopes):
                continue
            kind = _magic_call(child, names)
            if kind is not None:
                assert isinstance(child, ast.Call)
                found.append((child, kind))
                continue
            visit(child)

    visit(tree)
    found.sort(key=lambda item: (item[0].lineno, item[0].col_offset))
    return found


def _runner_expr(runner: str) -> str:
    parts = runner.split(".")
    if not runner or not all(part.isidentifier() for part in parts):
        raise ValueError(f"runner must be a name or a dotted path, not {runner!r}")
    if len(parts) == 1:
        return runner
    module, attr = ".".join(parts[:-1]), parts[-1]
    return f"__import__({module!r}, fromlist=[{attr!r}]).{attr}"


def _offsets(source: str) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _char_offset(lines: list[str], starts: list[int], lineno: int, col_bytes: int) -> int:
    line = lines[lineno - 1]
    return starts[lineno - 1] + len(line.encode("utf-8")[:col_bytes].decode("utf-8", "replace"))


def _compiles_with_await(source: str) -> bool:
    try:
        compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def rewrite_source(source: str, magic_names: set[str] | frozenset[str], runner: str) -> str:
    """Rewrite top-level calls of the given magics into ``await runner(...)``.

    ``get_ipython().run_line_magic('login', 'x')`` becomes
    ``(await runner('line', 'login', 'x', None))`` and
    ``get_ipython().run_cell_magic('api', 'l', 'body')`` becomes
    ``(await runner('cell', 'api', 'l', 'body'))``, keeping the line count.
    Calls inside functions, lambdas and class bodies are left alone, and so is any
    call whose rewriting would not compile with top-level ``await`` allowed. The
    source is returned unchanged (the same object) when nothing was rewritten.
    ``runner`` is a name in the user namespace or a dotted ``module.attr`` path.
    """
    if not any(name in source for name in magic_names):
        return source
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    calls = _top_level_calls(tree, magic_names)
    if not calls:
        return source
    target = _runner_expr(runner)
    lines = source.splitlines(keepends=True)
    starts = _offsets(source)

    edits: list[tuple[int, int, str]] = []
    for call, kind in calls:
        if call.end_lineno is None or call.end_col_offset is None:
            continue
        begin = _char_offset(lines, starts, call.lineno, call.col_offset)
        end = _char_offset(lines, starts, call.end_lineno, call.end_col_offset)
        args = [ast.get_source_segment(source, arg) for arg in call.args]
        if any(arg is None for arg in args):
            continue
        cell = args[2] if kind == "cell" else "None"
        text = f"(await {target}({kind!r}, {args[0]}, {args[1]}, {cell}))"
        missing = source[begin:end].count("\n") - text.count("\n")
        if missing > 0:
            text = text[:-1] + "\n" * missing + ")"
        edits.append((begin, end, text))

    def apply(chosen: list[tuple[int, int, str]]) -> str:
        out = source
        for begin, end, text in sorted(chosen, reverse=True):
            out = out[:begin] + text + out[end:]
        return out

    result = apply(edits)
    if _compiles_with_await(result):
        return result
    kept: list[tuple[int, int, str]] = []
    for edit in edits:
        if _compiles_with_await(apply([*kept, edit])):
            kept.append(edit)
    return apply(kept) if kept else source


class AwaitMagics:
    """IPython ``input_transformers_post`` entry made by :func:`install_transformer`."""

    has_side_effects = False

    def __init__(self, shell: Any, magic_names: set[str], runner: str) -> None:
        _runner_expr(runner)  # validate early
        self.shell = shell
        self.magic_names = frozenset(magic_names)
        self.runner = runner

    def __call__(self, lines: list[str]) -> list[str]:
        if not getattr(self.shell, "autoawait", False):
            return lines
        source = "".join(lines)
        try:
            result = rewrite_source(source, self.magic_names, self.runner)
        except Exception:
            return lines
        if result is source:
            return lines
        return result.splitlines(keepends=True)


def install_transformer(ip: Any, magic_names: set[str], runner: str, *, force: bool = False) -> bool:
    """Make cells that call our magics at top level ``await runner(kind, name, line, cell)``.

    Installed only where :func:`preferred_wait` is ``"async"`` (a kernel that
    handles widget messages while an async cell awaits), unless ``force``.
    Returns whether it is installed. Installing again replaces the previous one.
    """
    uninstall_transformer(ip)
    if not force and preferred_wait() != "async":
        return False
    ip.input_transformers_post.append(AwaitMagics(ip, set(magic_names), runner))
    return True


def uninstall_transformer(ip: Any) -> None:
    """Remove what :func:`install_transformer` installed (no error if nothing was)."""
    transformers = getattr(ip, "input_transformers_post", None)
    if transformers is None:
        return
    transformers[:] = [t for t in transformers if not isinstance(t, AwaitMagics)]
