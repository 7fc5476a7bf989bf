"""Wait for an answer from a widget form while a notebook cell keeps running.

When a session expires in the middle of a cell, the magics show a login form in
that cell's output and must wait, with the cell still running, until the user
clicks "Log in" (or "Cancel", or a timeout passes). While the cell waits, the
kernel has to keep handling the widget messages the browser sends (the typed
password, the click), but must not start the cells queued below it (Run All):
those run after the waiting cell has finished, in their order.

How that is done depends on what the running kernel can do; it is decided by
looking at the kernel object, not at its version string, once per kernel (at
``%load_ext`` through :func:`preferred_wait`, else at the first wait). A kernel no
line understands raises :class:`CannotWaitHere` before any form is shown, instead
of showing a form that could never be answered.

The package, one module per concern:

=====================  ===========================================================
``__init__``           this API: :func:`wait_for`, :func:`wait_for_async`, the
                       kernel line of the running kernel
``base``               the interface of a kernel line (:class:`KernelLine`, a
                       :class:`~.base.Pump` per wait), :class:`CannotWaitHere`,
                       and what the lines share (busy status, the cell's parent,
                       the kernel's interrupt while a cell waits)
``ipykernel6``         ipykernel 6.x: the message queue; all it touches inside
                       ipykernel is listed there, on one screen
``ipykernel7``         ipykernel 7.x: the main thread's stream, subshells, the
                       concurrent comm dispatch of 7.4; likewise listed there
``stepper``            running the kernel's handlers from a synchronous wait
``frontend``           :func:`frontend`: whether anybody could answer a form
``transformer``        :func:`install_transformer`: top-level calls of our magics
                       become ``await`` where the kernel prefers that
=====================  ===========================================================

Outside a kernel (plain Python, terminal IPython) the waits just poll ``done()``.
This package imports nothing heavy at import time: IPython, ipykernel, zmq and
asyncio are looked up lazily.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Literal

from ..errors import NoFrontendError
from .base import (
    CannotWaitHere,
    KernelLine,
    Pump,
    busy_while_waiting,
    handler_hooks_off,
    interrupt_points,
    interrupts_deferred,
    interrupts_noted,
    running_kernel,
)
from .frontend import FRONTEND_ENV, Frontend, frontend, no_frontend
from .ipykernel6 import QueueKernel
from .ipykernel7 import StreamKernel
from .transformer import AwaitMagics, install_transformer, rewrite_source, uninstall_transformer

__all__ = [
    "FRONTEND_ENV",
    "AwaitMagics",
    "CannotWaitHere",
    "Frontend",
    "NoFrontendError",
    "check_can_wait",
    "frontend",
    "install_transformer",
    "kernel_line",
    "kernel_wait_style",
    "preferred_wait",
    "rewrite_source",
    "uninstall_transformer",
    "wait_for",
    "wait_for_async",
]

#: The kernel lines, in the order they are tried.
LINES: tuple[type[KernelLine], ...] = (QueueKernel, StreamKernel)

_detected: tuple[Any, KernelLine | None] | None = None  # (kernel, its line), decided once


def _line_of(kernel: Any) -> KernelLine | None:
    global _detected
    if _detected is not None and _detected[0] is kernel:
        return _detected[1]
    line = next((cls(kernel) for cls in LINES if cls.fits(kernel)), None)
    _detected = (kernel, line)
    return line


def kernel_line() -> KernelLine | None:
    """The adapter for the kernel running this code; None outside a kernel (and in
    threads other than the kernel's main one, where the waits just poll).

    Raises :class:`CannotWaitHere` for a kernel no line understands.
    """
    kernel = running_kernel()
    if kernel is None:
        return None
    line = _line_of(kernel)
    if line is None:
        kind = type(kernel)
        raise CannotWaitHere(
            f"session-magics cannot keep this kernel ({kind.__module__}.{kind.__qualname__}) "
            "handling widget messages while a cell waits, so a login form shown here could "
            "never be answered. Known kernels: ipykernel 6.x and 7.x. Give the credentials "
            "another way: %login URL --user NAME --password-env VAR (or --token-env VAR)."
        )
    return line


def check_can_wait() -> None:
    """Raise :class:`CannotWaitHere` now if a form shown here could never be answered
    (a kernel no line understands). Call it before showing the form."""
    kernel_line()


def kernel_wait_style() -> Literal["none", "queue", "stream", "unknown"]:
    """How waiting works in the running kernel: ``none`` (no kernel), ``queue``
    (ipykernel 6 style), ``stream`` (ipykernel 7 style) or ``unknown``."""
    try:
        line = kernel_line()
    except CannotWaitHere:
        return "unknown"
    return "none" if line is None else line.style  # type: ignore[return-value]


def preferred_wait() -> Literal["sync", "async"]:
    """``async`` where the kernel itself handles widget messages while an async cell
    awaits (so cells calling our magics should be rewritten to ``await``), else ``sync``."""
    try:
        line = kernel_line()
    except CannotWaitHere:
        return "sync"
    return "async" if line is not None and line.prefers_async() else "sync"


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


@contextlib.contextmanager
def _waiting(*, asynchronous: bool, need_frontend: bool) -> Any:
    """The pump for this wait, with the kernel reported busy meanwhile."""
    if need_frontend and frontend() == "none":
        raise no_frontend()
    line = kernel_line()
    if line is None:
        yield Pump()
        return
    # Taking the kernel's messages in hand and giving them back happen whole (an
    # interrupt in between would leave the kernel's stream ours and no further cell
    # would ever run); an interrupt during the wait itself ends it as usual.
    stack = contextlib.ExitStack()
    try:
        with interrupts_deferred():
            stack.enter_context(handler_hooks_off(line))
            stack.enter_context(busy_while_waiting(line))
            pump = stack.enter_context(line.async_pump() if asynchronous else line.sync_pump())
        yield pump
    finally:
        with interrupts_deferred():
            stack.close()


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
    :class:`CannotWaitHere` at once when this kernel cannot handle widget messages
    from a synchronous wait (use :func:`wait_for_async` from an async cell there).
    An interrupt of the kernel raises ``KeyboardInterrupt``, also in a cell that
    awaits (where the kernel's interrupt waits for the event loop this wait blocks),
    but never in the middle of handing the kernel's messages (see
    :func:`~session_magics.waiting.base.interrupt_points`).
    """
    deadline = _deadline(timeout)
    with interrupt_points() as interrupts, _waiting(asynchronous=False, need_frontend=need_frontend) as pump:
        while True:
            interrupts.check()
            pump.pull_sync()  # no interrupt in the middle of the kernel's messages
            with interrupts.at_once():
                if done():
                    return True
                if _expired(deadline):
                    return False
                time.sleep(poll)


async def wait_for_async(
    done: Callable[[], bool],
    timeout: float | None,
    *,
    poll: float = 0.05,
    need_frontend: bool = True,
) -> bool:
    """Await until ``done()`` is true, handling widget messages meanwhile.

    The asynchronous twin of :func:`wait_for`, for cells that ``await`` (see
    :func:`install_transformer`); same return value and errors. An interrupt of the
    kernel raises ``KeyboardInterrupt`` here too: ipykernel cancels an awaiting cell
    on an interrupt, and that cancellation (only that one) becomes the
    ``KeyboardInterrupt`` a synchronous wait ends with.
    """
    import asyncio

    deadline = _deadline(timeout)
    with interrupts_noted() as interrupted, _waiting(asynchronous=True, need_frontend=need_frontend) as pump:
        try:
            while True:
                await pump.pull_async()
                if done():
                    return True
                if _expired(deadline):
                    return False
                await asyncio.sleep(poll)
        except asyncio.CancelledError:
            if not interrupted():
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancellation is answered: it ends here, as this error
            raise KeyboardInterrupt from None
