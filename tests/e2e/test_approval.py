"""The login form asks before credentials go to an origin only a project file named,
in a real JupyterLab on both kernel lines (ipykernel 6.29 and 7.4).

The project's pyproject.toml puts the token endpoint on http://localhost:PORT while the
API is http://127.0.0.1:PORT: one demo server, two origins, so the login works once the
user ticks the box. The kernel works in the project folder and keeps its user config in
a temporary XDG_CONFIG_HOME; tokens stay in memory (--no-keyring).
"""

from __future__ import annotations

import re
import secrets
import tomllib

import pytest

from session_magics.demo import DemoServer
from tests.servers import other_origin, project_logging_in_at


@pytest.fixture
def api():
    with DemoServer(password="pw-" + secrets.token_hex(6)) as server:
        yield server


def test_form_names_the_origin_and_sends_nothing_until_ticked(notebook, kernel, api, tmp_path) -> None:
    other = other_origin(api.url)
    project = project_logging_in_at(tmp_path / "cloned-repo", other)
    xdg = tmp_path / "xdg"
    setup = (
        f"import os\nos.chdir({str(project)!r})\nos.environ['XDG_CONFIG_HOME'] = {str(xdg)!r}\n"
        "%load_ext session_magics"
    )
    nb = notebook([setup, f"%login {api.url} --user demo --no-keyring", "print('NEXT RAN')"], kernel)
    nb.run_all()
    form = nb.login_form()
    form.get_by_text(f"Credentials go to {other} — set by ./pyproject.toml").wait_for()
    box = form.locator("input[type=checkbox]").first
    assert not box.is_checked()
    form.get_by_text(re.compile(rf"Send my credentials to {re.escape(other)}")).wait_for()
    nb.fill_login(api.config.password)
    nb.screenshot(f"approval-{kernel}-asked")
    assert api.stats()["password_grants"] == 0 and api.stats()["login_failures"] == 0
    # (A click without the tick is refused: tests/test_trust.py, in the kernel.)
    box.check()
    nb.click("Log in")
    out = nb.wait_for_output(1, r"Logged in as demo")
    assert f"credentials go to {other} (set by ./pyproject.toml)" in out
    nb.wait_for_output(2, "NEXT RAN")
    assert api.stats()["password_grants"] == 1
    saved = tomllib.loads((xdg / "session-magics" / "config.toml").read_text())
    assert saved["approved_credential_origins"] == {str(project.resolve()): [other]}
