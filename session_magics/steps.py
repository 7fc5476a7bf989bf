"""Drivers for flows written once as generators: the renewal flow and the magics' bodies.

A flow *yields* what it needs from its caller and *returns* its result:

* the renewal flow (:meth:`ApiSession.request_flow <session_magics.session.ApiSession.request_flow>`,
  pagination, GraphQL) yields :class:`~session_magics.session.NeedLogin` when only a
  new login can go on;
* a magic's body (``%login``, ``%%api``) yields each login form or OAuth panel it has
  to wait for, with :func:`answering` turning the renewal flow's NeedLogin into the
  forms of a login.

The same flow then runs under a synchronous driver (:func:`run`, :func:`drive`) and
an asynchronous one (:func:`run_async`, :func:`drive_async`), which differ only in
whether an answer is awaited, the way httpx drives one auth flow from its sync and
async clients. A driver that cannot answer (a wait or login failed) ends the flow at
once (``close``: its ``finally`` blocks run, pages fetched at once stop) and raises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from .redact import sealed

S = TypeVar("S")  # what a flow yields (a step to answer)
R = TypeVar("R")  # what it returns


class Steps(Generic[S, R]):
    """A flow for a driver to step through: iterating gives its steps (each answered
    before the next is asked for), ``result`` what it returned; leaving the ``with``
    ends the flow (at once also when the driver stops early)."""

    result: R  # set once the flow returned

    def __init__(self, flow: Generator[S, None, R]) -> None:
        self._flow = flow

    def __iter__(self) -> Iterator[S]:
        self.result = yield from self._flow

    def __enter__(self) -> Steps[S, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flow.close()


def run(flow: Generator[S, None, R], answer: Callable[[S], object]) -> R:
    """Run ``flow`` synchronously, answering each step with ``answer``."""
    with Steps(flow) as steps:
        for step in steps:
            answer(step)
    return steps.result


async def run_async(flow: Generator[S, None, R], answer: Callable[[S], Awaitable[object]]) -> R:
    """Run ``flow`` in a coroutine, awaiting the answer to each step."""
    with Steps(flow) as steps:
        for step in steps:
            await answer(step)
    return steps.result


@sealed()  # the frames of a renewal flow hold the token (its header): no traceback reaches them
def drive(flow: Generator[Any, None, Any], on_login: Callable[[Any], object]) -> Any:
    """Run a renewal flow synchronously, answering each NeedLogin with ``on_login``."""
    return run(flow, on_login)


@sealed()  # as drive
async def drive_async(flow: Generator[Any, None, Any], on_login: Callable[[Any], Awaitable[object]]) -> Any:
    """The asynchronous twin of :func:`drive`."""
    return await run_async(flow, on_login)


def answering(
    flow: Generator[Any, None, R], ask: Callable[[Any], Generator[S, None, object]]
) -> Generator[S, None, R]:
    """The renewal ``flow`` with each NeedLogin answered by the steps of ``ask(need)``
    (the forms of a login): one flow for a driver that waits for forms."""
    with Steps(flow) as steps:
        for need in steps:
            yield from ask(need)
    return steps.result
