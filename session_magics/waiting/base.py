"""What every kernel line offers a wait, and what the lines share.

A *kernel line* (:class:`KernelLine`) is one family of kernels whose message
plumbing works the same way: ipykernel 6.x (:mod:`.ipykernel6`) and ipykernel 7.x
(:mod:`.ipykernel7`). An adapter is made for the running kernel when the first
wait (or ``%load_ext``) asks for one; a kernel no line fits raises
:class:`CannotWaitHere` there, before any form is shown.

The interface is small:

* ``fits(kernel)``: whether this line understands the kernel (looked at, not its
  version string);
* ``sync_pump()`` / ``async_pump()``: a :class:`Pump` that keeps widget messages
  flowing while a cell waits, synchronously or with ``await``;
* ``prefers_async()``: whether the kernel itself handles widget messages while an
  async cell awaits, so that cells are better rewritten to ``await``;
* ``parent_ident()`` and ``wrap_publish_status()``: the two internals both lines
  have, used by the shared parts below (:func:`dispatching`,
  :func:`busy_while_waiting`).

All access to ipykernel's private attributes is in the adapters; this module uses
the kernel's public API only (``session``, ``get_parent``, ``set_parent``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from ..errors import SessionMagicsError

# Shell messages that are handled while a cell waits. Everything else (above all
# execute_request) is set aside and handled by the kernel after the cell.
DISPATCH_NOW = frozenset({"comm_open", "comm_msg", "comm_close", "comm_info_request", "kernel_info_request"})

PublishStatus = Callable[..., Any]
WrapStatus = Callable[[PublishStatus], PublishStatus]


class CannotWaitHere(SessionMagicsError):
    """This kernel cannot handle widget messages while this code waits, so a form
    shown here could never be answered."""


def running_kernel(*, any_thread: bool = False) -> Any | None:
    """The ipykernel-style kernel object whose main shell runs this code, if any.

    Unless ``any_thread``, None in other threads too (a user thread, a kernel
    subshell): only the main shell's code may touch the kernel's message plumbing,
    so there the waits just poll.
    """
    if "ipykernel" not in sys.modules:
        return None
    if not any_thread and threading.current_thread() is not threading.main_thread():
        return None
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:
        return None
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not hasattr(kernel, "session"):
        return None
    return kernel


def current_parent(kernel: Any) -> dict[str, Any]:
    """The message the kernel's main shell is handling (the waiting cell's request)."""
    try:
        parent = kernel.get_parent("shell")
    except Exception:
        return {}
    return parent if isinstance(parent, dict) else {}


def msg_type(kernel: Any, frames: Any) -> str | None:
    """The msg_type of a raw shell message, read from its header only (no side effects)."""
    try:
        frames = list(frames)
        zero_copy = bool(frames) and hasattr(frames[0], "bytes")  # zmq.Frame vs bytes
        _idents, parts = kernel.session.feed_identities(frames, copy=not zero_copy)
        header = kernel.session.unpack(bytes(getattr(parts[1], "bytes", parts[1])))
    except Exception:
        return None
    if not isinstance(header, dict):
        return None
    found = header.get("msg_type")
    return found if isinstance(found, str) else None


def log_error(what: str) -> None:
    """A widget handler failed: say so on the kernel's own stderr, as ipykernel does."""
    import traceback

    print(f"session-magics: error while {what}:", file=sys.__stderr__)
    traceback.print_exc(file=sys.__stderr__)


class Pump:
    """Keeps widget messages flowing while a cell waits. This one does nothing: for
    waits outside a kernel, and kernels that handle widget messages themselves."""

    def pull_sync(self) -> None:
        """Called on each poll of a synchronous wait."""

    async def pull_async(self) -> None:
        """Called on each poll of an asynchronous wait."""

    def close(self) -> None:
        """The wait ended: give back whatever was set aside or changed."""

    def __enter__(self) -> Pump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KernelLine(ABC):
    """One line of kernels: how waiting works there (see the module docstring)."""

    #: What :func:`~session_magics.waiting.kernel_wait_style` reports.
    style: ClassVar[str]

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    @classmethod
    @abstractmethod
    def fits(cls, kernel: Any) -> bool:
        """Whether this line understands ``kernel``."""

    def prefers_async(self) -> bool:
        """Whether the kernel handles widget messages while an async cell awaits."""
        return False

    @abstractmethod
    def sync_pump(self) -> Pump:
        """The pump for a synchronous wait."""

    @abstractmethod
    def async_pump(self) -> Pump:
        """The pump for an asynchronous wait."""

    # -- the internals both lines have (implemented by each adapter) ------------------

    @abstractmethod
    def parent_ident(self) -> Any:
        """The routing identity of the message the main shell is handling."""

    @abstractmethod
    def wrap_publish_status(self, wrap: WrapStatus) -> AbstractContextManager[Any]:
        """For the duration, the kernel publishes every status (busy, idle) through
        ``wrap(its own publisher)``."""


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """An interrupt (SIGINT: Jupyter's "Interrupt kernel", Ctrl+C in a terminal)
    arriving inside the block takes effect when the block ends, not in its middle.

    Around what must happen whole: putting the kernel's message stream or queue in
    our hands and giving it back, and moving a message from the kernel's queue to our
    stash. A ``KeyboardInterrupt`` raised between two of those steps would leave the
    next cells' ``execute_request`` in a stash nobody reads, and the kernel would
    never run another cell. The handler in effect before is called at the end, so
    the interrupt still does what it would have done (IPython's default handler
    raises ``KeyboardInterrupt``). Only the main thread receives signals; elsewhere
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def later(signum: int, frame: Any) -> None:
        arrived.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, later)
    except (ValueError, OSError):  # signals unavailable here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if arrived and callable(previous):
            previous(signal.SIGINT, None)
        elif arrived and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


@contextlib.contextmanager
def dispatching(line: KernelLine) -> Iterator[None]:
    """Around a message we dispatch ourselves while the cell runs.

    Dispatching makes the message the kernel's "parent" (where output goes):
    the waiting cell's parent is put back afterwards.
    """
    parent = current_parent(line.kernel)
    try:
        ident = line.parent_ident()
    except Exception:
        ident = None
    try:
        yield
    finally:
        if parent:
            with contextlib.suppress(Exception):
                line.kernel.set_parent(ident, parent, "shell")


def _no_hook() -> None:
    return None


@contextlib.contextmanager
def handler_hooks_off(line: KernelLine) -> Iterator[None]:
    """For the wait, the kernel's ``pre_handler_hook`` / ``post_handler_hook`` do nothing.

    ipykernel runs them around every message it dispatches (``dispatch_shell``,
    except 7.4's ``concurrent=True``), and all they do is swap the SIGINT handler:
    Python's default one for the handler's run, the one saved in
    ``kernel.saved_sigint_handler`` afterwards. Around a widget message the wait
    dispatches from inside the running cell, that would let the interrupt be
    swallowed by ``dispatch_shell`` ("KeyboardInterrupt caught in kernel") instead of
    ending the wait, and would leave the cell's handler in ``saved_sigint_handler``,
    for the kernel to restore after the cell (an interrupt reaching the idle kernel
    would then stop it). So the wait's own SIGINT handling stays in place.
    """
    with contextlib.ExitStack() as stack:
        for name in ("pre_handler_hook", "post_handler_hook"):
            if callable(getattr(line.kernel, name, None)):
                stack.enter_context(replaced_attribute(line.kernel, name, lambda _hook: _no_hook))
        yield


@contextlib.contextmanager
def busy_while_waiting(line: KernelLine) -> Iterator[None]:
    """Keep the kernel reported busy for the whole wait, whatever else it answers.

    Frontends and Jupyter Server show the last status the kernel published:
    JupyterLab's status bar, Notebook 7's tab icon, and the ``execution_state``
    of ``/api/sessions`` (what an idle-kernel culler acts on). While the cell
    waits, the kernel answers other messages, each ending with an ``idle``: the
    widget messages (handled by a pump, or by ipykernel 7 on a subshell thread,
    where its ``idle`` comes after the handler returns), and control requests
    such as the ``create_subshell_request`` JupyterLab sends as soon as the
    form's widgets appear. So for the duration of the wait every ``idle`` the
    kernel publishes is followed, on the same thread and so in order on IOPub,
    by a ``busy`` whose parent is the waiting cell's ``execute_request``; and
    that ``busy`` is said once when the wait starts. The cell's own ``idle``
    comes when it ends, after the wait, when the publisher is the kernel's own
    again. (The idle's parent is not looked at: read from the kernel's
    per-channel state it can be stale when another thread publishes.)
    """
    cell = current_parent(line.kernel)
    header = cell.get("header")
    if not isinstance(header, dict) or header.get("msg_type") != "execute_request":
        yield
        return

    def busy_after_idle(publish: PublishStatus) -> PublishStatus:
        def status_then_busy(status: str, channel: str, parent: Any = None) -> None:
            publish(status, channel, parent)
            if status == "idle":
                with contextlib.suppress(Exception):
                    publish("busy", "shell", parent=cell)

        with contextlib.suppress(Exception):
            publish("busy", "shell", parent=cell)
        return status_then_busy

    with contextlib.ExitStack() as stack:
        with contextlib.suppress(Exception):  # no status publisher to wrap: nothing to keep busy
            stack.enter_context(line.wrap_publish_status(busy_after_idle))
        yield


def _sigint_handler() -> Any | None:
    """The SIGINT handler in effect, when this thread may replace it (the main thread)
    and it is a Python function (not ``SIG_IGN`` / ``SIG_DFL``); else None."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        handler = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):
        return None
    return handler if callable(handler) else None


@contextlib.contextmanager
def sigint_handler(handler: Callable[[int, Any], Any], previous: Any) -> Iterator[None]:
    """``handler`` handles SIGINT for the duration; ``previous`` is put back afterwards."""
    import signal

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Interrupts:
    """Where a synchronous wait lets the kernel's interrupt (SIGINT) raise
    ``KeyboardInterrupt``: see :func:`interrupt_points`."""

    def __init__(self) -> None:
        self._seen = threading.Event()
        self._at_once = False

    def handler(self, signum: int, frame: Any) -> None:
        if self._at_once:
            raise KeyboardInterrupt
        self._seen.set()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if an interrupt came since the last check."""
        if self._seen.is_set():
            self._seen.clear()
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """Code that may stop anywhere (the form's step, the wait's sleep): an interrupt
        raises at once, as in any synchronous cell."""
        self.check()
        self._at_once = True
        try:
            yield
        finally:
            self._at_once = False


@contextlib.contextmanager
def interrupt_points() -> Iterator[Interrupts]:
    """For a synchronous wait: the kernel's interrupt (SIGINT) raises ``KeyboardInterrupt``
    only where the wait allows it (:meth:`Interrupts.check`, :meth:`Interrupts.at_once`).

    Elsewhere it is noted and raised at the next check. Python's default handler
    would raise anywhere: also between taking a message off the kernel's queue or
    stream and setting it aside (the cell below would be lost, and the kernel would
    stop answering), or while a pump is set up or put back (the kernel's stream
    would keep our callback). And in a cell that awaits, ipykernel's own handler
    only asks the event loop to cancel the cell (``_cancel_on_sigint``), a loop the
    synchronous wait blocks: the interrupt would not be seen before the wait ended
    by itself. The cell's handler is put back afterwards; an interrupt that came
    while the wait was ending is raised then.
    """
    interrupts = Interrupts()
    previous = _sigint_handler()
    if previous is None:  # not the main thread: no SIGINT reaches this wait
        yield interrupts
        return
    with sigint_handler(interrupts.handler, previous):
        yield interrupts
    interrupts.check()


@contextlib.contextmanager
def interrupts_noted() -> Iterator[Callable[[], bool]]:
    """For an asynchronous wait: yields a function saying whether the kernel was
    interrupted (SIGINT) since the wait began.

    In a cell that awaits, ipykernel turns the interrupt into a cancellation of the
    cell (``_cancel_on_sigint``): the wait gets asyncio's ``CancelledError``, like any
    other cancellation (``asyncio.wait_for``, a task group). Its SIGINT handler is
    wrapped for the wait to note the signal (and then do what it does), so that the
    wait can tell the kernel's interrupt from the other cancellations.
    """
    seen = threading.Event()
    previous = _sigint_handler()
    if previous is None:
        yield seen.is_set
        return

    def noting(signum: int, frame: Any) -> Any:
        seen.set()
        return previous(signum, frame)

    with sigint_handler(noting, previous):
        yield seen.is_set


@contextlib.contextmanager
def replaced_attribute(obj: Any, name: str, wrap: Callable[[Any], Any]) -> Iterator[None]:
    """Set ``obj.<name>`` (on the instance) to ``wrap(its current value)`` for the
    duration; afterwards the instance has what it had before (maybe nothing of its own)."""
    original = getattr(obj, name)
    had_own = name in vars(obj)
    setattr(obj, name, wrap(original))
    try:
        yield
    finally:
        if had_own:
            setattr(obj, name, original)
        else:
            with contextlib.suppress(AttributeError):
                delattr(obj, name)
