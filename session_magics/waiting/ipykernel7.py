"""ipykernel 7.x: shell messages reach the main thread through a ZMQ stream.

A shell-channel thread reads the shell socket and forwards each message either to
the main shell (the thread running the cells) or to a **subshell** (a thread of its
own), by the ``subshell_id`` in the message's header; except that ipykernel 7.4
sends a comm message to wherever that comm last sent a message of its own from.
Which path a widget message takes, and what handles it while a cell waits:

==========================================  =====================================
the message goes to                         handled by
==========================================  =====================================
a subshell (JupyterLab >= 4.4 sends comm    ipykernel, on that subshell's thread,
messages over subshells by default,         while the main thread waits: the
``commsOverSubshells``)                     kernel's supported way; we only poll
the main shell, the cell awaits             ipykernel >= 7.4 itself: ``shell_main``
(``wait_for_async``, rewritten cells)       dispatches comm messages concurrently
                                            while the cell holds the main lock
                                            (``dispatch_shell(concurrent=True)``);
                                            :class:`ConcurrentCommsPump` adds the
                                            ``idle`` it does not publish
the main shell, the cell blocks             :class:`StreamPump`: reads the main
(``wait_for``; or an async wait on          thread's stream itself (its callback
7.0-7.3)                                    swapped for the wait), handles comm
                                            messages at once, hands the others to
                                            the kernel's callback, in order, after;
                                            on 7.4 it adds the ``idle`` too
==========================================  =====================================

Which one a message takes is decided by the frontend (whether it created a
subshell) and the kernel, message by message, not by us: every wait has the pump
for the main shell in place, and messages sent to a subshell never reach it. One
form uses both: its widgets were opened by the waiting cell on the main shell, so
with subshells on the first update of a widget still comes to the main shell;
ipywidgets answers every update (an echo) from where it handled it, so the updates
after that go to the subshell (tests/test_kernel_lines.py shows this order).
Both subshell settings are tested, with real kernels (tests/test_kernel_lines.py)
and in JupyterLab (tests/e2e).

What this adapter touches inside ipykernel 7.x (nowhere else in the package):

==========================================================  ==========================
``kernel.shell_channel_thread.manager``                     find the main-thread stream
``.get_shell_channel_to_subshell_pair(None).to_stream``
``manager._shell_channel_to_main.to_stream``                the same, where the method
                                                            is missing
``kernel.shell_stream``                                     the stream, without a
                                                            shell-channel thread
``stream._recv_callback``, ``stream._recv_copy``            (pyzmq ZMQStream) the
                                                            kernel's callback, to put
                                                            back; ``on_recv``,
                                                            ``flush`` are public
``kernel.dispatch_shell(msg, subshell_id=None,              handle a widget message now
concurrent=True)``; its signature tells 7.4 apart
``kernel.shell_handlers`` (comm_open/msg/close)             wrapped for an async wait
                                                            on 7.4 (idle after each)
``kernel._parent_ident["shell"]``                           put the waiting cell's
                                                            parent back
``kernel.pre_handler_hook``, ``kernel.post_handler_hook``   no-ops for the wait (7.0-7.3
                                                            swap the SIGINT handler
                                                            around our dispatch)
``kernel._publish_status``                                  wrapped for the wait (busy
                                                            after every idle)
==========================================================  ==========================

Besides these, the kernel's public API: ``session``, ``get_parent``, ``set_parent``.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from .base import (
    DISPATCH_NOW,
    KernelLine,
    Pump,
    WrapStatus,
    dispatching,
    interrupts_deferred,
    msg_type,
    replaced_attribute,
)
from .stepper import Stepper

_COMM_TYPES = ("comm_open", "comm_msg", "comm_close")


def _main_stream(kernel: Any) -> Any | None:
    """The ZMQ stream delivering shell messages to the main thread."""
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
    try:
        params = inspect.signature(kernel.dispatch_shell).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "concurrent" in params


class StreamKernel(KernelLine):
    """ipykernel 7.x (see the module docstring)."""

    style = "stream"

    @classmethod
    def fits(cls, kernel: Any) -> bool:
        # Not enough: dispatch_shell(concurrent=) alone. ipykernel 7.4's in-process
        # kernel has it, but its frontend is blocked while a cell runs: nothing
        # could ever answer a form there.
        return _main_stream(kernel) is not None

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self.stream = _main_stream(kernel)
        self.concurrent = _dispatches_comms_concurrently(kernel)

    def prefers_async(self) -> bool:
        return self.concurrent

    def sync_pump(self) -> Pump:
        return StreamPump(self, self.stream)

    def async_pump(self) -> Pump:
        if self.concurrent:
            return ConcurrentCommsPump(self)
        return StreamPump(self, self.stream)

    def parent_ident(self) -> Any:
        return self.kernel._parent_ident["shell"]

    def wrap_publish_status(self, wrap: WrapStatus) -> AbstractContextManager[Any]:
        return replaced_attribute(self.kernel, "_publish_status", wrap)

    def publish_idle(self, parent: Any) -> None:
        # Looked up at call time: busy_while_waiting follows it with "busy".
        with contextlib.suppress(Exception):
            self.kernel._publish_status("idle", "shell", parent=parent)


class ConcurrentCommsPump(Pump):
    """An async wait on ipykernel >= 7.4, where the kernel handles comm messages
    itself; also the base of :class:`StreamPump`.

    ``dispatch_shell(concurrent=True)`` (the kernel's, while an async cell awaits;
    ours, in a synchronous wait: it leaves the cell's SIGINT handling alone)
    publishes no busy/idle status for the comm message, and ipywidgets' frontend
    sends at most one update per widget until it sees that ``idle``; without it the
    next update (a second password attempt, each further keystroke of a user name)
    would stay in the browser. So on such kernels the comm handlers are wrapped for
    the wait to publish that ``idle`` when they run on the main thread (on a
    subshell thread the kernel publishes its own).
    """

    def __init__(self, line: StreamKernel) -> None:
        self.line = line
        self.handlers = getattr(line.kernel, "shell_handlers", None)
        self.originals: dict[str, Any] = {}
        if line.concurrent and isinstance(self.handlers, dict):
            self.originals = {t: self.handlers[t] for t in _COMM_TYPES if t in self.handlers}
            for name, handler in self.originals.items():
                self.handlers[name] = self._wrap(handler)

    def _wrap(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        line = self.line

        def idle(msg: Any) -> None:
            if threading.current_thread() is threading.main_thread():
                line.publish_idle(msg)

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

    def close(self) -> None:
        if isinstance(self.handlers, dict):
            self.handlers.update(self.originals)
        self.originals = {}


class StreamPump(ConcurrentCommsPump):
    """Reads the main-thread shell stream itself: comm messages are handled at once,
    the others are handed to the kernel's own callback, in order, at the end."""

    def __init__(self, line: StreamKernel, stream: Any) -> None:
        super().__init__(line)
        self.kernel = line.kernel
        self.stream = stream
        self.callback = stream._recv_callback
        self.copy = bool(getattr(stream, "_recv_copy", False))
        self.stash: list[Any] = []
        self.stepper = Stepper()
        stream.on_recv(self._on_recv, copy=False)

    def _on_recv(self, frames: Any) -> None:
        with interrupts_deferred():  # (an interrupt here would lose the message)
            if msg_type(self.kernel, frames) not in DISPATCH_NOW:
                self.stash.append(frames)
                return
        kwargs: dict[str, Any] = {"subshell_id": None}
        if self.line.concurrent:
            kwargs["concurrent"] = True
        with dispatching(self.line):
            self.stepper.run(self.kernel.dispatch_shell(frames, **kwargs))

    def pull_sync(self) -> None:
        import zmq

        self.stepper.poll()
        with interrupts_deferred():  # between receiving and _on_recv: see there
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
        super().close()
