"""The kernel lines of session_magics.waiting against real kernels.

ipykernel 6.29 and 7.4 (the sm-k6 / sm-k7 environments of scripts/kernels.sh) are
started by jupyter_client; this test process is their frontend. A cell creates a
comm and waits (``wait_for`` or ``await wait_for_async``) until three comm messages
have reached it; the test sends them as a browser would, over the main shell
channel or over a kernel subshell (what JupyterLab >= 4.4 does on ipykernel 7 by
default), while a cell and a completion request are queued behind the waiting cell.

What must hold on every path: the comm messages are handled while the cell waits;
the queued requests are answered after it, in order; between the cell's first
busy and its last idle every idle the kernel publishes is followed by a busy for
the cell; and an interrupt ends the wait with the kernel still answering.

A kernel no line understands (ipykernel's in-process kernel, on both lines) fails
at once, before any form is shown.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import KERNELS, kernel_pythons

pytestmark = pytest.mark.slow

# Bounds on how long the test waits for a message that should come; reaching one
# means the message was lost (the test fails), they do not measure speed.
LOST = 60.0

SETUP = """\
import json
import threading
from comm import create_comm
from session_magics import waiting

got = []
comm = create_comm(target_name="session-magics-test")

def on_msg(msg):
    n = msg["content"]["data"]["n"]
    got.append((n, threading.current_thread() is threading.main_thread()))
    comm.send({"ack": n})  # as ipywidgets echoes an update

comm.on_msg(on_msg)
done = lambda: len(got) >= 3
report = lambda waited: print("WAITED", waited, json.dumps(got))
print(waiting.kernel_wait_style(), waiting.preferred_wait())
"""

WAIT = {
    "sync": "report(waiting.wait_for(done, {timeout}))",
    "async": "report(await waiting.wait_for_async(done, {timeout}))",
}
NEXT = "print('NEXT', len(got))"


class Frontend:
    """The client side of one real kernel: sends requests, keeps every IOPub message."""

    def __init__(self, km: Any, kc: Any) -> None:
        self.km = km
        self.kc = kc
        self.iopub: list[dict[str, Any]] = []

    def execute(self, code: str) -> str:
        return str(self.kc.execute(code, store_history=False))

    def send_shell(self, msg_type: str, content: dict[str, Any], subshell_id: str | None = None) -> str:
        msg = self.kc.session.msg(msg_type, content)
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def create_subshell(self) -> str:
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        reply = self.kc.get_control_msg(timeout=LOST)
        assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"], reply
        return str(reply["content"]["subshell_id"])

    def pump_iopub(self, until: Any, what: str) -> dict[str, Any]:
        """Read IOPub until a message satisfies ``until``; return that message."""
        for msg in self.iopub:
            if until(msg):
                return msg
        deadline = time.monotonic() + LOST
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            self.iopub.append(msg)
            if until(msg):
                return msg
        raise AssertionError(f"no IOPub message for {what} within {LOST} s")

    def replies(self, *msg_ids: str) -> list[dict[str, Any]]:
        """The shell replies to these requests, in the order they came (replies to
        other requests, such as jupyter_client's kernel_info at start, are passed over)."""
        wanted = set(msg_ids)
        out = []
        while len(out) < len(wanted):
            reply = self.kc.get_shell_msg(timeout=LOST)
            if reply["parent_header"].get("msg_id") in wanted:
                out.append(reply)
        return out

    def stdout(self, msg_id: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.iopub
            if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id
        )

    def finished(self, msg_id: str) -> dict[str, Any]:
        return self.pump_iopub(
            lambda m: m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id,
            f"the end of {msg_id}",
        )

    def run(self, code: str) -> str:
        msg_id = self.execute(code)
        self.finished(msg_id)
        (reply,) = self.replies(msg_id)
        assert reply["content"]["status"] == "ok", reply["content"]
        return self.stdout(msg_id)


@pytest.fixture(scope="module")
def kernels_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("jupyter-data")
    kernel_pythons(data)  # writes data/kernels/sm-k6 and sm-k7
    return data / "kernels"


def _start(kernels_dir: Path, name: str, tmp_path: Path) -> Iterator[Frontend]:
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    env.update(SESSION_MAGICS_FRONTEND="widgets", IPYTHONDIR=str(tmp_path / "ipython"))
    km = KernelManager(
        kernel_name=name,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels_dir)]),
        connection_file=str(tmp_path / "kernel.json"),
    )
    km.start_kernel(env=env)
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=LOST)
        yield Frontend(km, kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture(params=KERNELS)
def frontend(request: pytest.FixtureRequest, kernels_dir: Path, tmp_path: Path) -> Iterator[Frontend]:
    yield from _start(kernels_dir, str(request.param), tmp_path)


@pytest.fixture
def frontend_k7(kernels_dir: Path, tmp_path: Path) -> Iterator[Frontend]:
    yield from _start(kernels_dir, "sm-k7", tmp_path)


def _comm_id(fe: Frontend, setup_id: str) -> str:
    opened = fe.pump_iopub(
        lambda m: m["msg_type"] == "comm_open" and m["parent_header"].get("msg_id") == setup_id,
        "the comm_open",
    )
    return str(opened["content"]["comm_id"])


def _statuses_while(fe: Frontend, cell: str) -> list[tuple[str, str | None]]:
    """(state, parent msg_id) of every status from the cell's first busy to its last idle."""
    statuses = [
        (m["content"]["execution_state"], m["parent_header"].get("msg_id"))
        for m in fe.iopub
        if m["msg_type"] == "status"
    ]
    first = statuses.index(("busy", cell))
    last = len(statuses) - 1 - statuses[::-1].index(("idle", cell))
    return statuses[first : last + 1]


def _wait_with_three_comm_messages(fe: Frontend, mode: str, subshell_id: str | None) -> dict[str, Any]:
    setup = fe.execute(SETUP)
    comm_id = _comm_id(fe, setup)
    fe.finished(setup)
    fe.replies(setup)
    style = fe.stdout(setup).split()

    wait = fe.execute(WAIT[mode].format(timeout=LOST))
    fe.pump_iopub(
        lambda m: m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == wait,
        "the waiting cell's start",
    )
    # Queued behind the waiting cell, as Run All and the editor would.
    after = fe.execute(NEXT)
    complete = fe.send_shell("complete_request", {"code": "pri", "cursor_pos": 3})
    for n in (1, 2, 3):
        fe.send_shell("comm_msg", {"comm_id": comm_id, "data": {"n": n}}, subshell_id)
        fe.pump_iopub(
            lambda m, n=n: m["msg_type"] == "comm_msg" and m["content"]["data"] == {"ack": n},
            f"the ack of comm message {n}",
        )
    fe.finished(after)
    replies = fe.replies(wait, after, complete)
    return {
        "style": style,
        "wait": wait,
        "after": after,
        "complete": complete,
        "replies": [(r["msg_type"], r["parent_header"]["msg_id"], r["content"]["status"]) for r in replies],
        "got": json.loads(fe.stdout(wait).split(" ", 2)[2]),
    }


def _assert_waited_in_order(fe: Frontend, run: dict[str, Any]) -> None:
    wait, after = run["wait"], run["after"]
    assert fe.stdout(wait).startswith("WAITED True "), fe.stdout(wait)
    assert [n for n, _ in run["got"]] == [1, 2, 3]
    # The cells below ran after the waiting one, in order, and saw every message handled.
    assert run["replies"] == [
        ("execute_reply", wait, "ok"),
        ("execute_reply", after, "ok"),
        ("complete_reply", run["complete"], "ok"),
    ]
    assert fe.stdout(after) == "NEXT 3\n"
    # The kernel read busy for the whole wait: every idle answered by the cell's busy.
    statuses = _statuses_while(fe, wait)
    idles = [i for i, s in enumerate(statuses[:-1]) if s[0] == "idle"]
    assert idles, statuses  # the comm messages were answered with an idle each
    for i in idles:
        assert statuses[i + 1] == ("busy", wait), statuses


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_comm_messages_on_the_main_shell(frontend: Frontend, mode: str) -> None:
    """Subshells off (ipykernel 6 has none): every comm message reaches the main
    shell, where the cell waits; it is handled on the main thread meanwhile."""
    run = _wait_with_three_comm_messages(frontend, mode, subshell_id=None)
    _assert_waited_in_order(frontend, run)
    assert all(on_main for _, on_main in run["got"]), run["got"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_comm_messages_over_a_subshell(frontend_k7: Frontend, mode: str) -> None:
    """Subshells on (JupyterLab's default on ipykernel 7): messages sent over a
    subshell. ipykernel 7.4 routes a comm's messages to where it last sent from:
    the first to the main shell (the comm was opened there), the ones after the
    comm's reply to the subshell, handled on that subshell's thread."""
    fe = frontend_k7
    subshell = fe.create_subshell()
    run = _wait_with_three_comm_messages(fe, mode, subshell_id=subshell)
    _assert_waited_in_order(fe, run)
    assert run["style"] == ["stream", "async"]
    assert [on_main for _, on_main in run["got"]] == [True, False, False], run["got"]


def test_detected_lines(frontend: Frontend) -> None:
    out = frontend.run(SETUP)
    version = frontend.run("import ipykernel\nprint(ipykernel.__version__)").strip()
    expected = "queue sync" if version.startswith("6.") else "stream async"
    assert out.strip() == expected, (version, out)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_interrupt_ends_the_wait_and_the_kernel_still_answers(frontend: Frontend, mode: str) -> None:
    fe = frontend
    fe.run(SETUP)
    wait = fe.execute("print('WAITING', flush=True)\n" + WAIT[mode].format(timeout=None))
    fe.pump_iopub(
        lambda m: m["msg_type"] == "stream" and "WAITING" in m["content"]["text"],
        "the waiting cell's start",
    )
    fe.km.interrupt_kernel()
    fe.finished(wait)
    (reply,) = fe.replies(wait)
    # An awaiting cell is cancelled by the interrupt (ipykernel 6), a blocked one interrupted.
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] in ("KeyboardInterrupt", "CancelledError"), reply["content"]
    # The kernel's own message handling is back: the next cell runs.
    assert fe.run("print('AFTER')") == "AFTER\n"


# Ctrl+C arriving at the worst moment: the cell's wait has just taken the kernel's
# message stream (ipykernel 7) or queue (ipykernel 6) in hand and has not yet entered
# the block that gives it back. The pump is built, then the kernel sends itself SIGINT.
INTERRUPT_IN_SETUP = """\
import os, signal
line = waiting.kernel_line()
build = line.sync_pump

def build_then_interrupt():
    pump = build()
    os.kill(os.getpid(), signal.SIGINT)
    return pump

line.sync_pump = build_then_interrupt
try:
    waiting.wait_for(done, None)
finally:
    del line.sync_pump
"""


def test_an_interrupt_while_the_wait_takes_the_kernels_messages_leaves_the_kernel_working(
    frontend: Frontend,
) -> None:
    fe = frontend
    fe.run(SETUP)
    wait = fe.execute(INTERRUPT_IN_SETUP)
    fe.finished(wait)
    (reply,) = fe.replies(wait)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    # The stream/queue is the kernel's again: the next cells run, and widget messages
    # reach their handlers as in any idle kernel.
    assert fe.run("print('AFTER')") == "AFTER\n"
    assert fe.run(NEXT) == "NEXT 0\n"


IN_PROCESS = textwrap.dedent(
    """
    import json, os
    os.environ["SESSION_MAGICS_FRONTEND"] = "widgets"
    from ipykernel.inprocess.manager import InProcessKernelManager
    km = InProcessKernelManager()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()

    def run(code):
        msg_id = kc.execute(code)
        seen = []
        while True:
            m = kc.get_iopub_msg(timeout=60)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return seen
            if m["msg_type"] in ("display_data", "error"):
                seen.append([m["msg_type"], sorted(m["content"].get("data", {})), m["content"].get("ename")])

    print("OUT", json.dumps([run("%load_ext session_magics"), run(
        "%login http://127.0.0.1:9 --user demo --no-keyring"
    )]))
    """
)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_kernel_no_line_understands_fails_before_the_form(kernel: str, kernels_dir: Path) -> None:
    """ipykernel's in-process kernel: its frontend is blocked while a cell runs, so a
    form there could never be answered. %load_ext works; %login fails at once with
    CannotWaitHere, and no form (no widget) is displayed."""
    python = kernel_pythons()[kernel]
    done = subprocess.run(
        [str(python), "-c", IN_PROCESS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    load, login = json.loads(done.stdout.split("OUT ", 1)[1])
    assert load == []
    assert login == [["error", [], "CannotWaitHere"]]


def test_after_a_wait_an_idle_kernel_still_ignores_an_interrupt(frontend: Frontend) -> None:
    """Handling a widget message inside the cell must not leave the cell's SIGINT
    handler as the one the kernel restores afterwards: an interrupt reaching the
    idle kernel would then stop it (seen on ipykernel 6.29)."""
    fe = frontend
    saved = "print(get_ipython().kernel.saved_sigint_handler)"
    before = fe.run(saved)
    run = _wait_with_three_comm_messages(fe, "sync", subshell_id=None)
    assert fe.stdout(run["wait"]).startswith("WAITED True ")
    assert fe.run(saved) == before
    fe.km.interrupt_kernel()  # the kernel is idle: nothing to interrupt
    assert fe.run("print('ALIVE')") == "ALIVE\n"
