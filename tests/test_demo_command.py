"""`make demo`, the README's first command: the demo API and JupyterLab come up, and
where no OS keyring exists the demo brings a throwaway gnome-keyring along. `make
demo-oauth` likewise: the OpenID provider, an API that accepts its tokens, and JupyterLab
on notebooks/oauth.ipynb, whose cells run against them as written.

The demo runs in a real pseudo-terminal, and is stopped as a person stops it: Ctrl+C
typed into the terminal (the terminal driver sends SIGINT to the foreground process
group). Afterwards no process of the demo may remain, nor a port or the keyring
directory. Every process the demo starts carries a marker in its environment, so the
check finds processes that left the process group or the process tree as well."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pexpect
import pytest
import requests
from nbclient import NotebookClient

from tests.idp.person import Person
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_in_kernel(port: int, token: str, code: str | list[str], timeout: float = 120) -> str:
    """Start a kernel in the JupyterLab at ``port``, run ``code`` (a list: one cell after
    the other, until one fails), return what it printed (stdout, and the text of any
    error). Talks the server's own REST and websocket API."""
    import json
    import uuid

    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}/api/kernels", headers=headers, json={}, timeout=30).json()["id"]

    cells = [code] if isinstance(code, str) else code

    async def talk() -> str:
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}")
        printed: list[str] = []
        deadline = time.monotonic() + timeout
        for cell in cells:
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
                "code": cell,
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
            failed = False
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
                    failed = True
                elif kind == "status" and body["execution_state"] == "idle":
                    break
            if failed:
                break
        ws.close()
        return "".join(printed)

    try:
        return IOLoop.current().run_sync(talk, timeout=timeout + 10)
    finally:
        requests.delete(f"{base}/api/kernels/{kernel}", headers=headers, timeout=30)


def marked_processes(mark: str) -> dict[int, str]:
    """The running processes (not zombies) whose environment holds DEMO_TEST_MARK=mark."""
    found = {}
    needle = f"DEMO_TEST_MARK={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found[int(entry.name)] = cmdline.strip()
    return found


class DemoTerminal:
    """`make TARGET MAKE_VARS...` (`make demo`, `make demo-oauth`) in a pseudo-terminal,
    with JupyterLab on ``lab_port`` (token ``token``) and ``extra_env`` in its environment;
    everything it prints is collected by a reader thread (a pty that nobody reads fills up
    and blocks JupyterLab's logging)."""

    def __init__(
        self,
        tmp_path: Path,
        lab_port: int,
        token: str,
        *,
        target: str = "demo",
        make_vars: dict[str, int] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self.mark = uuid.uuid4().hex
        # Short: the private bus's socket lives in the keyring directory under it, and a
        # Unix socket's path has at most 107 bytes.
        self.tmpdir = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
        (tmp_path / "home").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
        # No session bus, hence no Secret Service: what a headless machine or a container has.
        for name in ("DBUS_SESSION_BUS_ADDRESS", "SESSION_MAGICS_SECRET_SERVICE", "PYTHON_KEYRING_BACKEND"):
            env.pop(name, None)
        for name in [k for k in env if k.startswith("OAUTH_")]:  # only what the test gives
            env.pop(name)
        env.update(
            HOME=str(tmp_path / "home"),
            XDG_CONFIG_HOME=str(tmp_path / "config"),
            XDG_DATA_HOME=str(tmp_path / "data"),
            JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
            TMPDIR=str(self.tmpdir),  # where the throwaway keyring directory goes
            DEMO_PASSWORD="penguins",  # read by --password-env in a kernel
            DEMO_TEST_MARK=self.mark,
            TERM="dumb",
        )
        env["DEMO_NOTEBOOKS"] = str(tmp_path / "demo-notebooks")  # the working copies
        env.update(extra_env or {})
        lab_args = (
            f"--no-browser --port={lab_port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={token} --LabApp.workspaces_dir={tmp_path / 'workspaces'}"
        )
        self.child = pexpect.spawn(
            "make",
            [
                "--no-print-directory",
                target,
                *(f"{name}={value}" for name, value in (make_vars or {}).items()),
                f"DEMO_ARGS={lab_args}",
            ],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(50, 200),
        )
        self._parts: list[str] = []
        self._lock = threading.Lock()
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                try:
                    chunk = self.child.read_nonblocking(4096, timeout=None)
                except (pexpect.EOF, OSError):
                    break
                with self._lock:
                    self._parts.append(chunk)
        finally:
            self.ended.set()

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._parts)

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.ended.is_set():
                break
            time.sleep(0.1)
        if check():
            return
        pytest.fail(f"{what}; output:\n{self.output[-4000:]}", pytrace=False)

    def wait_for_text(self, text: str, timeout: float = 120) -> None:
        self.wait_for(lambda: text in self.output, timeout, f"never printed {text!r}")

    def ctrl_c(self) -> None:
        """What a terminal does for Ctrl+C: the INTR character into the pty (whose driver
        sends SIGINT to the foreground process group)."""
        if not self.ended.is_set():
            with contextlib.suppress(OSError):  # make ended just now
                self.child.send("\x03")

    def wait_ended(self, timeout: float) -> int | None:
        """Wait until make has ended; its exit status (None when a signal ended it)."""
        if not self.ended.wait(timeout):
            pytest.fail(f"make {self.target} did not end; output:\n{self.output[-4000:]}", pytrace=False)
        self.child.close()
        return self.child.exitstatus

    def processes(self) -> dict[int, str]:
        """The running processes (not zombies) that carry this demo's marker."""
        return marked_processes(self.mark)

    def keyring_dirs(self) -> list[Path]:
        return sorted(self.tmpdir.glob("secret-service.*"))

    def kill(self) -> None:
        """Last resort after a failed test: nothing of the demo may outlive it."""
        for pid in self.processes():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        self.child.close(force=True)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[DemoTerminal, int, int, str]]:
    for tool in ("make", "gnome-keyring-daemon", "dbus-daemon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make system-deps` (make test does)", pytrace=False)
    api_port, lab_port, token = free_port(), free_port(), secrets.token_hex(16)
    term = DemoTerminal(tmp_path, lab_port, token, make_vars={"DEMO_PORT": api_port})
    try:
        term.wait_for(lambda: listening(api_port), 180, "the demo API never listened")
        term.wait_for(lambda: listening(lab_port), 120, "JupyterLab never listened")
        yield term, api_port, lab_port, token
    finally:
        term.kill()


def start_idle_kernel(lab_port: int, token: str) -> str:
    """A kernel of the demo's JupyterLab, left running (the demo must stop it)."""
    base = f"http://127.0.0.1:{lab_port}"
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}/api/kernels", headers=headers, json={}, timeout=30).json()["id"]
    return str(kernel)


def assert_everything_stopped(
    term: DemoTerminal, ports: dict[str, int], servers: str = "the demo API"
) -> None:
    """Nothing of the demo runs, none of ``ports`` (name: port) is taken, and the demo said
    it stopped JupyterLab, then ``servers``, then the throwaway keyring."""
    left = term.processes()
    assert not left, f"still running after make {term.target} ended:\n" + "\n".join(
        f"{pid} {cmd}" for pid, cmd in left.items()
    )
    for name, port in ports.items():
        assert not listening(port), f"{name}'s port {port} is still taken"
    assert term.keyring_dirs() == [], "the throwaway keyring directory was not removed"
    text = term.output
    # In order: JupyterLab (and its kernels), the servers, the keyring directory last.
    stages = [
        "demo: JupyterLab stopped",
        f"demo: {servers} stopped",
        "demo: throwaway keyring stopped and removed",
    ]
    positions = [text.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), text[-3000:]
    assert "Shut down this Jupyter server" not in text  # no question nobody can answer


def test_make_demo_without_an_os_keyring_uses_a_throwaway_one_and_one_ctrl_c_stops_it(demo):
    term, api_port, lab_port, token = demo
    text = term.output
    assert "running with a throwaway gnome-keyring" in text, text[-3000:]
    assert f"demo API at http://127.0.0.1:{api_port}" in text, text[-3000:]
    assert len(term.keyring_dirs()) == 1
    # The address to open is the quickstart's, with JupyterLab's token (its own banner
    # names /lab, which opens on the launcher).
    quickstart = f"http://127.0.0.1:{lab_port}/lab/tree/quickstart.ipynb?token={token}"
    term.wait_for_text(f"demo: open {quickstart}\r\n", 60)
    term.wait_for_text("demo: Ctrl+C here stops the demo and everything it started", 60)
    assert requests.get(quickstart, timeout=30).status_code == 200

    me = requests.get(f"http://127.0.0.1:{api_port}/me", timeout=10)
    assert me.status_code == 401 and me.headers["WWW-Authenticate"].startswith("Bearer")
    headers = {"Authorization": f"token {token}"}
    nb = requests.get(
        f"http://127.0.0.1:{lab_port}/api/contents/quickstart.ipynb?content=0",
        headers=headers,
        timeout=10,
    )
    assert nb.status_code == 200 and nb.json()["type"] == "notebook"
    # JupyterLab works on a copy: what it saves (outputs, edits) stays out of notebooks/.
    assert f"demo: JupyterLab works on copies in {term.tmp_path / 'demo-notebooks'}/" in text
    original = (ROOT / "notebooks" / "quickstart.ipynb").read_bytes()
    model = requests.get(
        f"http://127.0.0.1:{lab_port}/api/contents/quickstart.ipynb", headers=headers, timeout=10
    ).json()
    model["content"]["cells"][0]["source"] = "edited in the demo"
    saved = requests.put(
        f"http://127.0.0.1:{lab_port}/api/contents/quickstart.ipynb",
        headers=headers,
        json={"type": "notebook", "format": "json", "content": model["content"]},
        timeout=10,
    )
    assert saved.status_code == 200, saved.text
    assert (ROOT / "notebooks" / "quickstart.ipynb").read_bytes() == original
    assert "edited in the demo" in (term.tmp_path / "demo-notebooks" / "quickstart.ipynb").read_text()

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

    start_idle_kernel(lab_port, token)
    term.wait_for(
        lambda: any("ipykernel" in cmd for cmd in term.processes().values()), 60, "no kernel started"
    )
    running = " | ".join(term.processes().values())
    for part in ("jupyter-lab", "session_magics.demo", "gnome-keyring-daemon", "dbus-daemon", "ipykernel"):
        assert part in running, running  # the marker finds every kind of process the demo has

    term.ctrl_c()
    status = term.wait_ended(120)
    assert status != 0  # make reports the interruption
    assert_everything_stopped(term, {"the demo API": api_port, "JupyterLab": lab_port})


def test_a_taken_api_port_stops_the_demo_before_it_starts_anything(tmp_path):
    """Another program on DEMO_PORT would answer the notebooks in the demo API's place:
    the demo says so and stops, instead of announcing an API that is not its own."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        api_port = other.getsockname()[1]
        lab_port = free_port()
        term = DemoTerminal(tmp_path, lab_port, secrets.token_hex(16), make_vars={"DEMO_PORT": api_port})
        try:
            status = term.wait_ended(180)
            text = term.output
            assert status not in (0, None), text[-3000:]
            assert f"port {api_port} is taken" in text and "DEMO_PORT=" in text, text[-3000:]
            assert "demo: demo API at" not in text and "ServerApp" not in text, text[-3000:]
            assert not listening(lab_port)
            assert term.processes() == {} and term.keyring_dirs() == []
        finally:
            term.kill()


def test_ctrl_c_again_while_the_demo_stops_orphans_nothing(demo):
    term, api_port, lab_port, token = demo
    start_idle_kernel(lab_port, token)
    term.wait_for(
        lambda: any("ipykernel" in cmd for cmd in term.processes().values()), 60, "no kernel started"
    )
    term.ctrl_c()
    # Ctrl+C again at each stage of stopping (JupyterLab and its kernel, the API, the keyring).
    for stage in ("demo: stopping", "demo: JupyterLab stopped", "demo: the demo API stopped"):
        term.wait_for(
            lambda s=stage: s in term.output or term.ended.is_set(), 120, f"never printed {stage!r}"
        )
        term.ctrl_c()
        term.ctrl_c()
    term.wait_ended(120)
    assert_everything_stopped(term, {"the demo API": api_port, "JupyterLab": lab_port})


# --- make demo-oauth --------------------------------------------------------------


def oauth_cells() -> list[str]:
    """The code cells of notebooks/oauth.ipynb, as written."""
    nb = nbformat.read(ROOT / "notebooks" / "oauth.ipynb", as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


@pytest.fixture
def oauth_demo(tmp_path: Path) -> Iterator[tuple[DemoTerminal, dict[str, int], str, str]]:
    """`make demo-oauth` with OAUTH_FLOW=client and a client secret the test knows (the
    demo makes a random one when none is set): the terminal, the ports (idp, api, lab),
    JupyterLab's token, the secret."""
    for tool in ("make", "node", "gnome-keyring-daemon", "dbus-daemon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make system-deps` (make test does)", pytrace=False)
    ports = {"idp": free_port(), "api": free_port(), "lab": free_port()}
    token, secret = secrets.token_hex(16), secrets.token_urlsafe(24)
    term = DemoTerminal(
        tmp_path,
        ports["lab"],
        token,
        target="demo-oauth",
        make_vars={"DEMO_IDP_PORT": ports["idp"], "DEMO_OAUTH_API_PORT": ports["api"]},
        extra_env={"OAUTH_FLOW": "client", "OAUTH_CLIENT_SECRET": secret},
    )
    try:
        term.wait_for(lambda: listening(ports["idp"]), 180, "the OpenID provider never listened")
        term.wait_for(lambda: listening(ports["api"]), 60, "the API never listened")
        term.wait_for(lambda: listening(ports["lab"]), 120, "JupyterLab never listened")
        yield term, ports, token, secret
    finally:
        term.kill()


def test_make_demo_oauth_runs_the_oauth_notebook_against_its_provider_and_one_ctrl_c_stops_it(
    oauth_demo, secret_service_keyring, monkeypatch, tmp_path
):
    term, ports, token, secret = oauth_demo
    issuer, api = f"http://127.0.0.1:{ports['idp']}", f"http://127.0.0.1:{ports['api']}"
    notebook = f"http://127.0.0.1:{ports['lab']}/lab/tree/oauth.ipynb?token={token}"
    term.wait_for_text(f"demo: open {notebook}\r\n", 60)
    term.wait_for_text("demo: Ctrl+C here stops the demo and everything it started", 60)
    text = term.output
    assert "running with a throwaway gnome-keyring" in text, text[-3000:]
    assert f"demo: OpenID provider at {issuer} " in text, text[-3000:]
    assert f"demo: API at {api} " in text, text[-3000:]
    assert "ada / lovelace" in text, text[-3000:]  # how to sign in at the provider's pages
    assert "notebook (public: --oauth device and --oauth code)" in text, text[-3000:]
    assert "robot (confidential: --oauth client" in text, text[-3000:]
    assert "logs in with OAUTH_FLOW=client" in text, text[-3000:]
    assert secret not in text

    # The printed addresses answer: the notebook, the provider's discovery, the API.
    assert requests.get(notebook, timeout=30).status_code == 200
    discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == issuer
    assert discovery["device_authorization_endpoint"] == f"{issuer}/device/auth"
    me = requests.get(f"{api}/me", timeout=10)
    assert me.status_code == 401 and me.headers["WWW-Authenticate"].startswith("Bearer")

    # A person's part, as the demo tells it: a device code approved at the provider's own
    # pages as ada / lovelace gives a token the API takes as ada's.
    start = requests.post(
        f"{issuer}/device/auth", data={"client_id": "notebook", "scope": "openid profile"}, timeout=10
    ).json()
    page = Person("ada", "lovelace").approve_device(start["verification_uri"], start["user_code"])
    assert "successful" in page
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": start["device_code"],
        "client_id": "notebook",
    }
    access = requests.post(f"{issuer}/token", data=grant, timeout=10).json()["access_token"]
    me = requests.get(f"{api}/me", headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert me.status_code == 200 and me.json()["sub"] == "ada"

    # The notebook as written, run by nbclient against the printed addresses: client
    # credentials, nobody to approve anything.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for name, value in {
        "OAUTH_API_URL": api,
        "OAUTH_ISSUER": issuer,
        "OAUTH_FLOW": "client",
        "OAUTH_CLIENT_SECRET": secret,
    }.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(ROOT / "notebooks" / "oauth.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = nbformat.writes(nb)
    assert "Logged in as robot" in outputs and f"via {issuer}" in outputs
    assert "subject: None | client: robot | scope: read" in outputs and "Logged out of" in outputs
    assert secret not in outputs

    # And in a kernel of the demo's own JupyterLab, which has the variables the notebook
    # reads: its cells, as written, one after the other.
    printed = run_in_kernel(ports["lab"], token, oauth_cells())
    assert "ERROR" not in printed, printed
    assert "Logged in as robot" in printed and f"via {issuer}" in printed, printed
    assert "subject: None | client: robot | scope: read" in printed, printed
    assert secret not in printed

    start_idle_kernel(ports["lab"], token)
    term.wait_for(
        lambda: any("ipykernel" in cmd for cmd in term.processes().values()), 60, "no kernel started"
    )
    running = " | ".join(term.processes().values())
    for part in ("jupyter-lab", "demo.idp", "provider.mjs", "gnome-keyring-daemon", "ipykernel"):
        assert part in running, running

    term.ctrl_c()
    status = term.wait_ended(120)
    assert status != 0  # make reports the interruption
    assert_everything_stopped(
        term,
        {"the OpenID provider": ports["idp"], "the API": ports["api"], "JupyterLab": ports["lab"]},
        servers="the OpenID provider and the API",
    )


@pytest.mark.parametrize("taken", ["DEMO_IDP_PORT", "DEMO_OAUTH_API_PORT"])
def test_a_taken_port_stops_the_oauth_demo_before_it_starts_anything(tmp_path, taken):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        ports = {"DEMO_IDP_PORT": free_port(), "DEMO_OAUTH_API_PORT": free_port()}
        ports[taken] = other.getsockname()[1]
        lab_port = free_port()
        term = DemoTerminal(
            tmp_path, lab_port, secrets.token_hex(16), target="demo-oauth", make_vars=ports
        )
        try:
            status = term.wait_ended(180)
            text = term.output
            assert status not in (0, None), text[-3000:]
            assert f"port {ports[taken]} is taken" in text and f"{taken}=" in text, text[-3000:]
            assert "demo: OpenID provider at" not in text and "ServerApp" not in text, text[-3000:]
            assert not any(listening(port) for name, port in ports.items() if name != taken)
            assert not listening(lab_port)
            assert term.processes() == {} and term.keyring_dirs() == []
        finally:
            term.kill()


def test_ctrl_c_in_the_secret_service_wrapper_stops_its_daemons_and_removes_the_directory():
    """scripts/with-secret-service.sh alone (make test runs in it): Ctrl+C reaches the
    command, and the wrapper then stops the keyring daemon and the bus and removes its
    directory, whatever further Ctrl+C come meanwhile."""
    mark = uuid.uuid4().hex
    tmpdir = Path(tempfile.mkdtemp(prefix="wss-", dir="/tmp"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DBUS_SESSION_BUS_ADDRESS", "SESSION_MAGICS_SECRET_SERVICE")
    }
    env.update(TMPDIR=str(tmpdir), DEMO_TEST_MARK=mark, TERM="dumb")
    # A command that still uses the keyring while it stops, as pytest's teardown or a
    # kernel saving its token would: the bus and the daemon must outlive it.
    waiting = (
        "import signal, time\n"
        "from keyring.backends import SecretService\n"
        "ring = SecretService.Keyring()\n"
        "print('READY', flush=True)\n"
        "try:\n"
        "    signal.pause()  # until the Ctrl+C\n"
        "except KeyboardInterrupt:\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stops in its own time\n"
        "    try:\n"
        "        for n in range(20):\n"
        "            ring.set_password('wrapper-test', 'u', str(n))\n"
        "            assert ring.get_password('wrapper-test', 'u') == str(n)\n"
        "        print('KEYRING ANSWERED WHILE STOPPING', flush=True)\n"
        "    except Exception as exc:\n"
        "        print('KEYRING GONE WHILE STOPPING', type(exc).__name__, flush=True)\n"
        "    raise SystemExit(130)\n"
    )
    child = pexpect.spawn(
        str(ROOT / "scripts" / "with-secret-service.sh"),
        [sys.executable, "-c", waiting],
        env=env,
        encoding="utf-8",
        timeout=120,
    )
    try:
        child.expect("READY")
        running = " | ".join(marked_processes(mark).values())
        assert "dbus-daemon" in running and "gnome-keyring-daemon" in running, running
        assert len(list(tmpdir.glob("secret-service.*"))) == 1
        child.send("\x03")
        child.send("\x03")
        child.expect(pexpect.EOF)
        child.close()
        assert "KEYRING ANSWERED WHILE STOPPING" in child.before, child.before
        assert child.exitstatus == 130, (child.exitstatus, child.signalstatus, child.before)
        assert marked_processes(mark) == {}
        assert list(tmpdir.glob("secret-service.*")) == []
    finally:
        for pid in marked_processes(mark):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        child.close(force=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
