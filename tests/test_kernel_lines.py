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

import html
import json
import os
import queue
import re
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
import html
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
    env.update(
        SESSION_MAGICS_FRONTEND="widgets",
        IPYTHONDIR=str(tmp_path / "ipython"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # no user config file of the person running the tests
    )
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


def _after(fe: Frontend, msg: dict[str, Any]) -> Any:
    """A filter for messages that came after ``msg`` on IOPub."""
    before = {id(m) for m in fe.iopub[: fe.iopub.index(msg) + 1]}
    return lambda m: id(m) not in before


def _wait_begins(fe: Frontend, cell: str, after: dict[str, Any]) -> None:
    """Return once the wait of ``cell`` has begun: the cell's busy, said once when a
    wait starts (see busy_while_waiting), after the IOPub message ``after``."""
    later = _after(fe, after)
    fe.pump_iopub(
        lambda m: later(m)
        and m["msg_type"] == "status"
        and m["content"]["execution_state"] == "busy"
        and m["parent_header"].get("msg_id") == cell,
        "the start of the wait",
    )


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


def _interrupt_once_waiting(fe: Frontend, code: str) -> dict[str, Any]:
    """Run ``code`` (it prints WAITING, then waits), interrupt the kernel once the wait has
    begun, and return the cell's execute_reply."""
    wait = fe.execute(code)
    printed = fe.pump_iopub(
        lambda m: m["msg_type"] == "stream" and "WAITING" in m["content"]["text"],
        "the waiting cell's start",
    )
    _wait_begins(fe, wait, printed)
    fe.km.interrupt_kernel()
    fe.finished(wait)
    (reply,) = fe.replies(wait)
    return reply


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_interrupt_ends_the_wait_and_the_kernel_still_answers(frontend: Frontend, mode: str) -> None:
    fe = frontend
    fe.run(SETUP)
    reply = _interrupt_once_waiting(fe, "print('WAITING', flush=True)\n" + WAIT[mode].format(timeout=None))
    # Both waits end with KeyboardInterrupt, as any interrupted cell: the asynchronous one
    # too, which ipykernel interrupts by cancelling the awaiting cell (asyncio's
    # CancelledError, turned into KeyboardInterrupt by the wait).
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    assert "CancelledError" not in "".join(reply["content"]["traceback"])
    # The kernel's own message handling is back: the next cell runs.
    assert fe.run("print('AFTER')") == "AFTER\n"


AWAITING_CELL_WAIT = """\
import asyncio
await asyncio.sleep(0)  # the cell awaits: ipykernel's interrupt now goes through the event loop
print('WAITING', flush=True)
report(waiting.wait_for(done, None))
"""


def test_interrupt_reaches_a_synchronous_wait_in_a_cell_that_awaits(frontend: Frontend) -> None:
    """In a cell that awaits, ipykernel's SIGINT handler asks the event loop to cancel the
    cell, and a synchronous wait blocks that loop: without the wait's own handling the
    interrupt would be seen only once the wait ended by itself (here: never)."""
    fe = frontend
    fe.run(SETUP)
    reply = _interrupt_once_waiting(fe, AWAITING_CELL_WAIT)
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    assert fe.run("print('AFTER')") == "AFTER\n"
    # The cell's handler was put back: an interrupt reaching the idle kernel is ignored.
    fe.km.interrupt_kernel()
    assert fe.run("print('ALIVE')") == "ALIVE\n"


def test_a_cancellation_that_is_no_interrupt_stays_a_cancellation(frontend: Frontend) -> None:
    """Only the kernel's interrupt becomes KeyboardInterrupt: asyncio.wait_for ending an
    asynchronous wait still sees its CancelledError (and says TimeoutError)."""
    fe = frontend
    out = fe.run(
        SETUP + "import asyncio\n"
        "try:\n"
        "    await asyncio.wait_for(waiting.wait_for_async(lambda: False, None), 0.2)\n"
        "except TimeoutError:\n"
        "    print('TIMEOUT')\n"
    )
    assert out.splitlines()[-1] == "TIMEOUT", out


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


# -- the magics: an interrupt while a login form waits in the running cell ----------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PASSWORD = "penguins"
TYPED = "typed-then-interrupted"

#: How the magic is called: as typed in a cell (ipykernel 7.4 rewrites the cell to
#: ``await``: an asynchronous wait), inside a function (never rewritten: a synchronous
#: wait on both kernels), in a cell that awaits something else first (an async cell:
#: on ipykernel 6 a synchronous wait inside it).
CALLS = {
    "login": {
        "cell": "%login {url} --user demo --no-keyring",
        "function": "def log_in():\n"
        '    get_ipython().run_line_magic("login", "{url} --user demo --no-keyring")\n'
        "log_in()",
        "awaiting": "import asyncio\nawait asyncio.sleep(0)\n%login {url} --user demo --no-keyring",
    },
    "api": {
        "cell": "%%api\nGET /me",
        "function": 'def me():\n    return get_ipython().run_cell_magic("api", "", "GET /me")\nme()',
        "awaiting": "import asyncio\nawait asyncio.sleep(0)\n%api GET /me",
    },
}


def _widgets_waiting(fe: Frontend, cell: str, what: str) -> list[tuple[str, dict[str, Any]]]:
    """Wait until ``cell`` shows a widget view (``what``: the login form, a panel) and its
    wait has begun (the cell's busy, said once when the wait starts); the comm id and
    state of every widget the cell opened."""
    shown = fe.pump_iopub(
        lambda m: m["msg_type"] == "display_data"
        and m["parent_header"].get("msg_id") == cell
        and WIDGET_VIEW in m["content"]["data"],
        what,
    )
    _wait_begins(fe, cell, shown)
    return [
        (m["content"]["comm_id"], m["content"]["data"].get("state", {}))
        for m in fe.iopub
        if m["msg_type"] == "comm_open" and m["parent_header"].get("msg_id") == cell
    ]


def _form_waits(fe: Frontend, cell: str) -> dict[str, str]:
    """Wait until ``cell`` shows a login form and waits for it; the comm ids of the form's
    widgets by role."""
    comms: dict[str, str] = {}
    for comm_id, state in _widgets_waiting(fe, cell, "the login form"):
        model, description = state.get("_model_name"), state.get("description")
        if model == "PasswordModel":
            comms["password"] = comm_id
        elif model == "ButtonModel" and description == "Log in":
            comms["log in"] = comm_id
        if not model.endswith(("LayoutModel", "StyleModel")):
            comms["controls"] = comms.get("controls", "") + " " + comm_id
    assert "password" in comms and "log in" in comms, comms
    return comms


def _update(comm_id: str, value: str) -> dict[str, Any]:
    """A widget's new value, as ipywidgets' frontend sends it."""
    return {"comm_id": comm_id, "data": {"method": "update", "state": {"value": value}, "buffer_paths": []}}


def _type_password(fe: Frontend, comms: dict[str, str], password: str) -> None:
    """What the browser sends when the password field is left; returns once the form
    took the value out of the widget (its update back to "")."""
    sent = fe.send_shell("comm_msg", _update(comms["password"], password))
    fe.pump_iopub(
        lambda m: m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == comms["password"]
        and m["content"]["data"].get("method") == "update"
        and m["content"]["data"].get("state", {}).get("value") == "",
        f"the form taking the password ({sent})",
    )


def _log_in_through(fe: Frontend, cell: str) -> None:
    """Answer the form of ``cell`` as a person would: password, then "Log in"."""
    comms = _form_waits(fe, cell)
    _type_password(fe, comms, PASSWORD)
    click = {"method": "custom", "content": {"event": "click"}}
    fe.send_shell("comm_msg", {"comm_id": comms["log in"], "data": click})
    fe.finished(cell)
    (reply,) = fe.replies(cell)
    assert reply["content"]["status"] == "ok", reply["content"]


def _shown_text(fe: Frontend, cell: str) -> str:
    """Everything ``cell`` printed or displayed as text (display updates included)."""
    parts = []
    for m in fe.iopub:
        if m["parent_header"].get("msg_id") != cell:
            continue
        if m["msg_type"] == "stream":
            parts.append(m["content"]["text"])
        elif m["msg_type"] in ("display_data", "update_display_data", "execute_result"):
            parts.append(str(m["content"]["data"].get("text/plain", "")))
    return "\n".join(parts)


def _interrupt_the_form(fe: Frontend, cell: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Type a password into the waiting form (no click), interrupt the kernel; the
    cell's reply, and the comm ids of the form's widgets."""
    comms = _form_waits(fe, cell)
    _type_password(fe, comms, TYPED)
    fe.km.interrupt_kernel()
    fe.finished(cell)
    (reply,) = fe.replies(cell)
    return reply["content"], comms


def _assert_one_line(fe: Frontend, cell: str, reply: dict[str, Any], line: str) -> None:
    """The cell ended with KeyboardInterrupt, shown (reply and IOPub alike) as one line."""
    assert reply["status"] == "error"
    assert reply["ename"] == "KeyboardInterrupt", reply
    shown = [ANSI.sub("", text) for text in reply["traceback"]]
    assert shown == [f"KeyboardInterrupt: {line}"], shown
    assert "CancelledError" not in "".join(shown) and "asyncio" not in "".join(shown)
    # What the notebook displays: the error message on IOPub.
    error = fe.pump_iopub(
        lambda m: m["msg_type"] == "error" and m["parent_header"].get("msg_id") == cell, "the error output"
    )
    assert error["content"]["ename"] == "KeyboardInterrupt"
    assert [ANSI.sub("", text) for text in error["content"]["traceback"]] == shown


def _assert_form_closed(fe: Frontend, cell: str, comms: dict[str, str]) -> None:
    """The form was removed (the cell's one KeyboardInterrupt line says why, the form adds
    no line of its own) and its widgets closed before the cell's end: a password typed into
    it afterwards goes nowhere."""
    assert "Login interrupted" not in _shown_text(fe, cell)
    end = fe.iopub.index(fe.finished(cell))
    closed = {m["content"]["comm_id"] for m in fe.iopub[:end] if m["msg_type"] == "comm_close"}
    models = {
        m["content"]["comm_id"]: m["content"]["data"]["state"]["_model_name"]
        for m in fe.iopub
        if m["msg_type"] == "comm_open" and m["parent_header"].get("msg_id") == cell
    }
    open_ = [models[c] for c in comms["controls"].split() if c not in closed]
    assert not open_, open_


#: Run in the kernel: what every login form still in memory holds (never the secret itself).
HELD = """\
import gc
from session_magics.ui import LoginForm
held = [
    (bool(f._secret), f._events.qsize(), bool(f.secret.value), f.state.interrupted)
    for f in gc.get_objects() if isinstance(f, LoginForm)
]
print("HELD", [h for h in held if any(h[:3])])
"""


def _assert_nothing_held(fe: Frontend, comms: dict[str, str]) -> None:
    """The kernel answers the next cell, and no form holds a password: not the one typed
    before the interrupt, nor one typed into the closed form afterwards."""
    _type_password_into_closed_form(fe, comms)
    assert fe.run(HELD) == "HELD []\n"


def _type_password_into_closed_form(fe: Frontend, comms: dict[str, str]) -> None:
    # Handled (dropped: the comm is closed) before the next cell runs, in order.
    fe.send_shell("comm_msg", _update(comms["password"], TYPED))


@pytest.mark.parametrize("call", ["cell", "function", "awaiting"])
def test_interrupting_the_login_form(frontend: Frontend, demo_api_factory: Any, call: str) -> None:
    """%login's form waits in the running cell; the user types a password, then
    interrupts the kernel. The cell ends with one line (no traceback through asyncio
    or ipykernel), the form is closed, nothing was sent or stored, no form holds the
    password, and the next %login shows a fresh form that works. As typed in a cell
    (ipykernel 7.4 awaits it), inside a function (a synchronous wait on both kernels),
    and in a cell that awaits something else (ipykernel 6: a synchronous wait inside
    an awaiting cell, where the kernel's interrupt waits for the event loop)."""
    fe = frontend
    api = demo_api_factory(access_ttl=300, refresh_ttl=3600)
    fe.run("%load_ext session_magics")
    cell = fe.execute(CALLS["login"][call].format(url=api.url))
    reply, comms = _interrupt_the_form(fe, cell)
    _assert_one_line(
        fe, cell, reply, "%login interrupted while the login form waited: not logged in, nothing was stored"
    )
    _assert_form_closed(fe, cell, comms)
    _assert_nothing_held(fe, comms)
    assert api.stats()["password_grants"] == 0 and api.stats()["login_failures"] == 0
    again = fe.execute(CALLS["login"][call].format(url=api.url))
    _log_in_through(fe, again)
    assert "Logged in as demo" in _shown_text(fe, again)
    assert api.stats()["password_grants"] == 1 and api.stats()["login_failures"] == 0


@pytest.mark.parametrize("call", ["cell", "function", "awaiting"])
def test_interrupting_the_login_form_of_a_running_request(
    frontend: Frontend, demo_api_factory: Any, call: str
) -> None:
    """The session expired and cannot be refreshed: the login form appears in the running
    %%api cell (or %api line); the user types a password, then interrupts. Same promises
    as for %login, and the same request afterwards gets a fresh form and completes."""
    fe = frontend
    api = demo_api_factory(access_ttl=300, refresh_ttl=3600)
    fe.run("%load_ext session_magics")
    _log_in_through(fe, fe.execute(CALLS["login"]["cell"].format(url=api.url)))
    api.advance_clock(100_000)  # access and refresh token both expired on the server
    api.reset_stats()
    cell = fe.execute(CALLS["api"][call])
    reply, comms = _interrupt_the_form(fe, cell)
    magic = "%api" if call == "awaiting" else "%%api"
    _assert_one_line(
        fe,
        cell,
        reply,
        f"{magic} interrupted while the login form waited: not logged in, nothing was stored; "
        "the request was not completed",
    )
    _assert_form_closed(fe, cell, comms)
    _assert_nothing_held(fe, comms)
    stats = api.stats()
    assert stats["refresh_failures"] == 1 and stats["password_grants"] == 0 and stats["login_failures"] == 0
    again = fe.execute(CALLS["api"][call])
    _log_in_through(fe, again)
    assert f"GET {api.url}/me → 200 OK" in _shown_text(fe, again)
    stats = api.stats()
    assert stats["password_grants"] == 1 and stats["login_failures"] == 0


def _panel_waits(fe: Frontend, cell: str) -> dict[str, Any]:
    """Wait until ``cell`` shows an OAuth device panel and waits for it; the comm ids
    of its Cancel button and message line, and the link the person opens."""
    panel: dict[str, Any] = {"html": []}
    for comm_id, state in _widgets_waiting(fe, cell, "the device code panel"):
        if state.get("_model_name") == "ButtonModel" and state.get("description") == "Cancel":
            panel["cancel"] = comm_id
        elif state.get("_model_name") == "HTMLModel":
            panel["html"].append(comm_id)
            link = re.search(r'href="([^"]+)"', state.get("value", ""))
            if link:
                panel["link"] = html.unescape(link.group(1))
    assert "cancel" in panel and "link" in panel, panel
    return panel


def test_interrupting_the_device_code_panel(frontend: Frontend, idp: Any, oauth_api: Any) -> None:
    """%login --oauth device waits for the person to approve in a browser; interrupted,
    the cell ends with one line, the panel is removed (no line of its own) and its widgets
    closed, the login is abandoned; the next %login shows a new panel that works."""
    from tests.idp.person import Person

    fe = frontend
    fe.run("%load_ext session_magics")
    login = (
        f"%login {oauth_api.url} --oauth device --issuer {idp.issuer} --client-id notebook "
        "--scope 'openid profile' --no-keyring"
    )
    cell = fe.execute(login)
    panel = _panel_waits(fe, cell)
    fe.km.interrupt_kernel()
    fe.finished(cell)
    (reply,) = fe.replies(cell)
    _assert_one_line(
        fe,
        cell,
        reply["content"],
        "%login interrupted while the device code panel waited: the login was abandoned",
    )
    shown = _shown_text(fe, cell)
    assert "interrupted" not in shown.lower() and "Logged in" not in shown, shown
    assert any(
        m["msg_type"] == "update_display_data" and m["content"]["data"].get("text/plain") == ""
        for m in fe.iopub
        if m["parent_header"].get("msg_id") == cell
    ), "the panel was not replaced"
    end = fe.iopub.index(fe.finished(cell))
    closed = {m["content"]["comm_id"] for m in fe.iopub[:end] if m["msg_type"] == "comm_close"}
    assert {panel["cancel"], *panel["html"]} <= closed
    again = fe.execute(login)
    Person("ada").approve_device(_panel_waits(fe, again)["link"])
    fe.finished(again)
    (reply,) = fe.replies(again)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "Logged in as ada" in _shown_text(fe, again)
