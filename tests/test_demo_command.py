"""`make demo`, the README's first command: the demo API and JupyterLab come up, and
where no OS keyring exists the demo brings a throwaway gnome-keyring along."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen, output: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"{what} (exit code {proc.poll()}); output:\n" + "".join(output)[-4000:])


def run_in_kernel(port: int, token: str, code: str, timeout: float = 120) -> str:
    """Start a kernel in the JupyterLab at ``port``, run ``code``, return what it printed
    (stdout, and the text of any error). Talks the server's own REST and websocket API."""
    import json
    import uuid

    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}/api/kernels", headers=headers, json={}, timeout=30).json()["id"]

    async def talk() -> str:
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}")
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        }
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        await ws.write_message(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        printed: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await ws.read_message()
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = msg["msg_type"], msg["content"]
            if kind == "stream":
                printed.append(body["text"])
            elif kind == "error":
                printed.append(f"ERROR {body['ename']}: {body['evalue']}\n")
            elif kind == "status" and body["execution_state"] == "idle":
                break
        ws.close()
        return "".join(printed)

    try:
        return IOLoop.current().run_sync(talk, timeout=timeout + 10)
    finally:
        requests.delete(f"{base}/api/kernels/{kernel}", headers=headers, timeout=30)


def test_make_demo_without_an_os_keyring_uses_a_throwaway_one(tmp_path):
    for tool in ("make", "gnome-keyring-daemon", "dbus-run-session"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make system-deps` (make test does)", pytrace=False)
    api_port, lab_port, token = free_port(), free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    # No session bus, hence no Secret Service: what a headless machine or a container has.
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("SESSION_MAGICS_SECRET_SERVICE", None)
    env.pop("PYTHON_KEYRING_BACKEND", None)
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        DEMO_PASSWORD="penguins",  # read by --password-env in the kernel below
    )
    (tmp_path / "home").mkdir()
    lab_args = (
        f"--no-browser --port={lab_port} --ServerApp.port_retries=0 "
        f"--IdentityProvider.token={token} --LabApp.workspaces_dir={tmp_path / 'workspaces'}"
    )
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"DEMO_PORT={api_port}", f"DEMO_ARGS={lab_args}"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: listening(api_port), 180, "the demo API never listened", proc, output)
        wait_until(lambda: listening(lab_port), 120, "JupyterLab never listened", proc, output)
        text = "".join(output)
        assert "running with a throwaway gnome-keyring" in text, text[-3000:]
        assert f"demo API at http://127.0.0.1:{api_port}" in text, text[-3000:]

        me = requests.get(f"http://127.0.0.1:{api_port}/me", timeout=10)
        assert me.status_code == 401 and me.headers["WWW-Authenticate"].startswith("Bearer")
        headers = {"Authorization": f"token {token}"}
        nb = requests.get(
            f"http://127.0.0.1:{lab_port}/api/contents/quickstart.ipynb?content=0",
            headers=headers,
            timeout=10,
        )
        assert nb.status_code == 200 and nb.json()["type"] == "notebook"

        # A kernel of this JupyterLab logs in and keeps the token in the throwaway keyring.
        code = (
            "%load_ext session_magics\n"
            "import os\n"
            "%login {{os.environ['SESSION_MAGICS_DEMO_URL']}} --user demo --password-env DEMO_PASSWORD\n"
            "from session_magics.store import KeyringStore\n"
            "print('BACKEND', KeyringStore().description)\n"
            "me = %api GET /me\n"
            "print('ME', me.status_code, me.data['username'])\n"
        )
        printed = run_in_kernel(lab_port, token, code)
        assert "Logged in as demo" in printed, printed
        assert "BACKEND OS keyring (keyring.backends.SecretService.Keyring)" in printed, printed
        assert "ME 200 demo" in printed, printed
        assert "penguins" not in printed  # the password itself is never shown
    finally:
        # Ctrl+C in a terminal: SIGINT to the whole process group.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    reader.join(10)
    assert not listening(api_port), "the demo API outlived the demo"
    assert not listening(lab_port), "JupyterLab outlived the demo"
