"""Run the kernel's message handlers (coroutines) from a synchronous wait.

A synchronous wait blocks the thread that runs the event loop, so the pumps of
both kernel lines drive ``kernel.dispatch_shell(...)`` themselves, a step at a
time, with :class:`Stepper`.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .base import log_error


class Stepper:
    """Runs coroutines from synchronous code, on the current thread.

    A comm handler normally finishes without suspending; one that does suspend is
    resumed on a later poll once what it awaits is done and, if still unfinished
    when the wait ends, handed to the event loop.

    Each coroutine runs in **one** copy of the context current when it started, for
    all of its steps, as an asyncio Task would: what a handler sets in a ContextVar
    (ipykernel 7 keeps the parent message in one) stays with that handler across its
    steps, and the waiting cell's own context is not changed by it.

    A handler that raises an ``Exception`` is logged and dropped, as ipykernel's own
    dispatcher does. ``KeyboardInterrupt`` (the kernel's interrupt, Ctrl+C in a
    terminal) and other ``BaseException``\\ s are not caught: they end the wait, and
    with it the waiting cell.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Any, contextvars.Context, Any]] = []

    def run(self, coro: Any) -> None:
        self._advance(coro, contextvars.copy_context())

    def _advance(self, coro: Any, ctx: contextvars.Context) -> None:
        try:
            waiting = ctx.run(coro.send, None)
        except StopIteration:
            return
        except Exception:
            log_error("handling a widget message")
            return
        self._pending.append((coro, ctx, waiting))

    def poll(self) -> None:
        """Take each suspended handler one step further if what it awaits is done."""
        pending, self._pending = self._pending, []
        for coro, ctx, waiting in pending:
            done = getattr(waiting, "done", None)
            if waiting is None or (done is not None and done()):
                self._advance(coro, ctx)
            else:
                self._pending.append((coro, ctx, waiting))

    def close(self) -> None:
        """Hand the handlers still suspended to the event loop, each in its own context."""
        import asyncio

        pending, self._pending = self._pending, []
        if not pending:
            return
        loop = asyncio.get_event_loop()
        for coro, ctx, waiting in pending:
            loop.create_task(_resume(coro, waiting), context=ctx)


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
