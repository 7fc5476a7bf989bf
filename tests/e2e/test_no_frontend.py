"""Without a widget frontend (nbclient, papermill) nothing may wait for a form:
``frontend()`` says "none" and the waits fail at once instead of hanging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import kernel_pythons

CELLS = [
    "from session_magics import waiting\nprint('FRONTEND', waiting.frontend())",
    # No timeout (None): a wait that did not fail at once would hang until nbclient's
    # own cell timeout, which fails the test with CellTimeoutError.
    """\
try:
    waiting.wait_for(lambda: False, None)
except Exception as exc:
    print('SYNC', type(exc).__name__, isinstance(exc, waiting.NoFrontendError))
""",
    """\
try:
    await waiting.wait_for_async(lambda: False, None)
except Exception as exc:
    print('ASYNC', type(exc).__name__, isinstance(exc, waiting.NoFrontendError))
""",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jupyter-data")
    kernel_pythons(path)
    return path


def test_nbclient_gets_none_quickly(
    kernel: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data_dir))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for name in ("JPY_SESSION_NAME", "SESSION_MAGICS_FRONTEND"):
        monkeypatch.delenv(name, raising=False)

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = NotebookClient(nb, kernel_name=kernel, timeout=60, startup_timeout=60)
    client.execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs)

    assert text(0).strip() == "FRONTEND none"
    assert text(1).strip() == "SYNC NoFrontendError True"
    assert text(2).strip() == "ASYNC NoFrontendError True"


NBCLIENT_RUN = """
import json, sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell(sys.argv[2])]
NotebookClient(nb, kernel_name=sys.argv[1], timeout=60, startup_timeout=60).execute()
print("OUT " + json.dumps("".join(o.get("text", "") for o in nb.cells[0].outputs)))
"""


def _isolated_env(data_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "SESSION_MAGICS_FRONTEND")}
    env.update(
        JUPYTER_DATA_DIR=str(data_dir),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    return env


def test_papermill_run_from_a_notebook_kernel_gets_none(kernel: str, data_dir: Path, tmp_path: Path) -> None:
    """papermill/nbclient started from inside a JupyterLab kernel inherits that kernel's
    JPY_SESSION_NAME; its own kernel still has no frontend and must not wait."""
    env = _isolated_env(data_dir, tmp_path)
    env["JPY_SESSION_NAME"] = "/home/user/analysis.ipynb"  # what the Lab kernel passes on
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            NBCLIENT_RUN,
            kernel,
            CELLS[0] + "\nimport os\nprint(os.environ['JPY_SESSION_NAME'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("OUT ", 1)[1])
    assert out.split() == ["FRONTEND", "none", "/home/user/analysis.ipynb"]


def test_a_kernel_a_server_named_gets_widgets(kernel: str, data_dir: Path, tmp_path: Path) -> None:
    """What jupyter_server does: JPY_SESSION_NAME in the kernel's environment only (a
    JupyterLab console sends no cellId, so this is what tells it has a frontend)."""
    env = _isolated_env(data_dir, tmp_path)
    script = NBCLIENT_RUN.replace(
        ".execute()", ".execute(env={**os.environ, 'JPY_SESSION_NAME': '/home/user/analysis.ipynb'})"
    ).replace("import json, sys", "import json, os, sys")
    done = subprocess.run(
        [sys.executable, "-c", script, kernel, CELLS[0]], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.split("OUT ", 1)[1]).strip() == "FRONTEND widgets"
