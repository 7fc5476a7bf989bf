"""Fixtures for the browser tests: one Jupyter server and one Chromium for all of
tests/e2e, a fresh browser page per test, the ``kernel`` parameter (sm-k6, sm-k7)
and the ``frontend`` a notebook opens in.

``frontend`` is JupyterLab (``"lab"``) unless a test parametrises it, e.g. over
both frontends and both kernel lines::

    @pytest.mark.parametrize("frontend", FRONTENDS)
    def test_x(notebook, kernel, frontend): ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cannot_run
from tests.e2e.harness import (
    CHROMIUM,
    KERNELS,
    JupyterLab,
    NotebookPage,
    launch_browser,
    screenshots_dir,
)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    server = JupyterLab(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# Package scope: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, which would break asyncio.run() in the tests after ours.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        cannot_run(f"{CHROMIUM} is missing (scripts/install-system-deps.sh installs it)")
    with launch_browser() as b:
        yield b


@pytest.fixture
def page(browser: Any, lab: JupyterLab, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            name = request.node.name.replace("[", "-").replace("]", "")
            path = screenshots_dir() / f"FAILED-{name}.png"
            with contextlib.suppress(Exception):
                pg.screenshot(path=str(path), full_page=True)
        context.close()
        lab.shutdown_kernels()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(params=KERNELS)
def kernel(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def frontend() -> str:
    """The frontend notebooks open in: JupyterLab unless the test parametrises it
    (``@pytest.mark.parametrize("frontend", FRONTENDS)``)."""
    return "lab"


@pytest.fixture
def notebook(lab: JupyterLab, page: Any, frontend: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Factory: notebook(cells, kernel) -> a NotebookPage named after the test, open
    in the test's ``frontend`` with its kernel started and idle."""

    def make(cells: list[str], kernel: str, name: str | None = None) -> NotebookPage:
        stem = name or request.node.name
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)
        return NotebookPage.create(lab, page, cells, kernel, stem, frontend).open()

    return make
