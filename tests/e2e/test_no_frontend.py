"""Without a widget frontend (nbclient, papermill) nothing may wait for a form:
``frontend()`` says "none" and the waits fail at once instead of hanging."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness import kernel_pythons

CELLS = [
    "from session_magics import waiting\nprint('FRONTEND', waiting.frontend())",
    """\
import time
started = time.monotonic()
try:
    waiting.wait_for(lambda: False, None)
except Exception as exc:
    print('SYNC', type(exc).__name__, time.monotonic() - started < 5)
""",
    """\
started = time.monotonic()
try:
    await waiting.wait_for_async(lambda: False, None)
except Exception as exc:
    print('ASYNC', type(exc).__name__, time.monotonic() - started < 5)
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
    started = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - started

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs)

    assert text(0).strip() == "FRONTEND none"
    assert text(1).strip() == "SYNC NoFrontendError True"
    assert text(2).strip() == "ASYNC NoFrontendError True"
    assert elapsed < 45, f"took {elapsed:.1f} s"
