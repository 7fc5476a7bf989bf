"""ipykernel 6.x: shell messages go through the kernel's message queue.

Every shell message is put into ``kernel.msg_queue`` (a tornado ``Queue`` of
``(order, dispatch, args)`` items) and the kernel's dispatcher, the one running the
current cell, is its only consumer. So while a cell waits nobody takes messages off
that queue; the wait does it itself (:class:`QueuePump`): widget/comm messages are
handled at once, every other request (the ``execute_request`` of the cells below,
completions...) is set aside and put back at the head of the queue when the wait
ends, so the kernel runs them afterwards, in order.

* A synchronous wait first moves pending messages from the shell socket into the
  queue (``shell_stream.flush()``) and runs the handlers with a :class:`Stepper`.
* An asynchronous wait lets the event loop fill the queue and awaits the handlers.
* If the kernel's dispatcher is parked in an idle ``msg_queue.get()`` (possible
  after Run All, when the current cell is not being run by that dispatcher), the
  next message would be handed straight to that parked getter and stay there until
  the cell ends; a synchronous wait first hands it a no-op item.

This line has no subshells: every widget message comes through the queue.

What this adapter touches inside ipykernel 6.x (nowhere else in the package):

==================================  ===============================================
``kernel.msg_queue``                ``qsize``, ``get_nowait``, ``put_nowait``;
                                    ``._getters`` (tornado's private list of parked
                                    getters)
``kernel.shell_stream.flush()``     socket → queue (ZMQStream, public)
``kernel.schedule_dispatch``        the no-op item for a parked getter
``kernel.dispatch_shell(msg)``      handle a widget message now
``kernel._parent_ident["shell"]``   put the waiting cell's parent back
``kernel.pre_handler_hook``,        no-ops for the wait: they would swap
``kernel.post_handler_hook``        the SIGINT handler around our dispatch
``kernel._publish_status``          wrapped for the wait (busy after every idle)
==================================  ===============================================

Besides these, the kernel's public API: ``session``, ``get_parent``, ``set_parent``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from .base import (
    DISPATCH_NOW,
    KernelLine,
    Pump,
    WrapStatus,
    dispatching,
    interrupts_deferred,
    log_error,
    msg_type,
    replaced_attribute,
)
from .stepper import Stepper


async def _noop() -> None:
    return None


class QueueKernel(KernelLine):
    """ipykernel 6.x (see the module docstring)."""

    style = "queue"

    @classmethod
    def fits(cls, kernel: Any) -> bool:
        queue = getattr(kernel, "msg_queue", None)
        needed = ("get_nowait", "put_nowait", "qsize")
        if queue is None or not all(hasattr(queue, name) for name in needed):
            return False
        return getattr(kernel, "shell_stream", None) is not None and hasattr(kernel, "schedule_dispatch")

    def sync_pump(self) -> Pump:
        return QueuePump(self)

    def async_pump(self) -> Pump:
        return QueuePump(self)

    def parent_ident(self) -> Any:
        return self.kernel._parent_ident["shell"]

    def wrap_publish_status(self, wrap: WrapStatus) -> AbstractContextManager[Any]:
        return replaced_attribute(self.kernel, "_publish_status", wrap)


class QueuePump(Pump):
    """Handles comm messages from ``kernel.msg_queue`` and sets the rest aside."""

    def __init__(self, line: QueueKernel) -> None:
        self.line = line
        self.kernel = line.kernel
        self.queue = line.kernel.msg_queue
        self.stash: list[Any] = []
        self.stepper = Stepper()

    def _classify(self, item: Any) -> tuple[Any, tuple[Any, ...]] | None:
        """(dispatch, args) if the item is a shell message to handle now, else None."""
        if not (isinstance(item, tuple) and len(item) == 3):
            return None
        _, dispatch, args = item
        if getattr(dispatch, "__name__", "") != "dispatch_shell":
            return None
        if getattr(dispatch, "__self__", None) is not self.kernel or not args:
            return None
        if msg_type(self.kernel, args[0]) not in DISPATCH_NOW:
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

    def _take_due(self) -> list[tuple[Any, tuple[Any, ...]]]:
        """:meth:`_due`, whole: an interrupt cannot drop a message between the queue
        and the stash (it would be the next cell's ``execute_request``)."""
        with interrupts_deferred():
            return list(self._due())

    def pull_sync(self) -> None:
        self._feed_idle_getter()
        self.stepper.poll()
        with interrupts_deferred():
            self.kernel.shell_stream.flush()
        for dispatch, args in self._take_due():
            with dispatching(self.line):
                self.stepper.run(dispatch(*args))

    async def pull_async(self) -> None:
        for dispatch, args in self._take_due():
            with dispatching(self.line):
                try:
                    await dispatch(*args)
                except Exception:
                    log_error("handling a widget message")

    def close(self) -> None:
        rest = []
        while self.queue.qsize():
            rest.append(self.queue.get_nowait())
        for item in self.stash + rest:
            self.queue.put_nowait(item)
        self.stash = []
        self.stepper.close()
