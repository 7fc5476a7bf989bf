"""The drivers of flows written once as generators (session_magics.steps): the same flow
gives the same steps and result under the synchronous and the asynchronous driver, and a
failed answer ends the flow at once."""

from __future__ import annotations

import asyncio

import pytest

from session_magics import Interrupted
from session_magics.steps import answering, drive, drive_async, run, run_async


def login_flow(log: list[str]):
    """A stand-in renewal flow: two logins needed, then a result."""
    try:
        log.append("start")
        yield "need-1"
        log.append("after-1")
        yield "need-2"
        log.append("after-2")
        return "result"
    finally:
        log.append("closed")


def forms(need: str):
    """The steps of one login: two forms to wait for, and whether one was answered."""
    yield f"{need}/form-a"
    yield f"{need}/form-b"
    return True


def both_drivers(flow_factory, answered: list[str]):
    """Run a fresh flow under each driver; the answers and results they saw."""

    def answer(step):
        answered.append(step)

    async def answer_async(step):
        await asyncio.sleep(0)
        answered.append(step)

    sync = run(flow_factory(), answer)
    sync_steps = list(answered)
    answered.clear()
    async_ = asyncio.run(run_async(flow_factory(), answer_async))
    return (sync, sync_steps), (async_, list(answered))


def test_sync_and_async_drivers_give_the_same_steps_and_result():
    log: list[str] = []
    answered: list[str] = []
    first, second = both_drivers(lambda: login_flow(log), answered)
    assert first == second == ("result", ["need-1", "need-2"])
    assert log == ["start", "after-1", "after-2", "closed"] * 2


def test_answering_turns_each_need_into_the_forms_of_a_login():
    log: list[str] = []
    answered: list[str] = []
    first, second = both_drivers(lambda: answering(login_flow(log), forms), answered)
    expected = ["need-1/form-a", "need-1/form-b", "need-2/form-a", "need-2/form-b"]
    assert first == second == ("result", expected)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_failed_answer_ends_the_flow_at_once_and_is_raised(asynchronous):
    log: list[str] = []

    def answer(step):
        log.append(f"answer {step}")
        raise LookupError("nobody answered")

    async def answer_async(step):
        answer(step)

    flow = answering(login_flow(log), forms)
    with pytest.raises(LookupError, match="nobody answered"):
        if asynchronous:
            asyncio.run(run_async(flow, answer_async))
        else:
            run(flow, answer)
    # closed before the error left the driver (not later, by the garbage collector)
    assert log == ["start", "answer need-1/form-a", "closed"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_sealed_drivers_drop_the_frames_of_the_flow(asynchronous):
    """drive / drive_async: no traceback reaches the frames of a renewal flow (they hold
    the token), and Ctrl+C in an answer becomes Interrupted (one line)."""

    def flow():
        token = "tok-held-by-the-flow"  # noqa: F841  (a local the traceback must not reach)
        yield "need"
        raise ValueError("the flow failed")

    def answer(step):
        pass

    async def answer_async(step):
        pass

    with pytest.raises(ValueError) as failed:
        asyncio.run(drive_async(flow(), answer_async)) if asynchronous else drive(flow(), answer)
    frames = []
    tb = failed.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] in ("boundary", "async_boundary")  # nothing below the boundary
    assert "flow" not in frames
    assert failed.value.__context__ is None

    def interrupted(step):
        raise KeyboardInterrupt

    async def interrupted_async(step):
        interrupted(step)

    with pytest.raises(Interrupted):
        asyncio.run(drive_async(flow(), interrupted_async)) if asynchronous else drive(flow(), interrupted)
