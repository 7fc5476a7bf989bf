"""OAuth logins in a real JupyterLab, on both kernel lines (ipykernel 6.29 and 7.4):

* device flow: Run All stops at the panel in %login's cell (link, user code, countdown);
  the person approves at the provider's pages; the cells below run. Later the refresh
  token is revoked and the access token expires: the panel appears in the running
  %%api cell, the person approves again, the same request completes and Run All
  carries on;
* code flow: the "Sign in" link opens the provider's sign-in page in the browser; after
  signing in there, the provider redirects the browser to the kernel's loopback
  listener and the cells below run;
* the saved notebook holds no token and no device code;
* an issuer only a cloned project's pyproject.toml names (another origin than the API):
  the panel names it and the file, and the issuer (behind a recording proxy) hears
  nothing — not even discovery — until the box is ticked; then the device panel, or the
  "Sign in" link where the person types name and password at the provider's page; the
  approval is kept in the user's config file. Cancel instead: one line, nothing sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from session_magics.profile import Profile
from session_magics.store import KeyringStore
from tests.idp.person import Person

PANEL = ".session-magics-oauth"


@pytest.fixture
def provider(secret_service_keyring, idp_factory, oauth_api_factory, forget_stored_tokens):
    idp = idp_factory(access_ttl=4)
    api = oauth_api_factory(idp)
    forget_stored_tokens(api.url)
    return idp, api


def panel_in(nb, cell: int):
    panel = nb.page.locator(".jp-Notebook .jp-CodeCell").nth(cell).locator(PANEL).first
    panel.wait_for(state="visible", timeout=30_000)
    return panel


#: A cell that prints NEXT and who the API says is logged in.
WHO_AM_I = 'me = %api GET /me\nprint("NEXT", me.data["sub"])'


def oauth_login_cells(flow: str, idp, api) -> list[str]:
    """The first cells: load the extension, log in to ``api`` with the OAuth ``flow`` at
    ``idp`` (the public client "notebook"), then :data:`WHO_AM_I`."""
    return [
        "%load_ext session_magics",
        f"%login {api.url} --oauth {flow} --issuer {idp.issuer} --client-id notebook "
        "--scope 'openid profile'",
        WHO_AM_I,
    ]


def no_panel_left(nb) -> None:
    """A finished panel is gone from the page, and the saved notebook holds no widget view
    (which a reopened notebook could not find): the magic's line says how the login ended."""
    nb.page.wait_for_function(f"() => document.querySelectorAll('{PANEL}').length === 0")
    outputs = json.dumps([cell.get("outputs", []) for cell in nb.save()["cells"]])
    assert "application/vnd.jupyter.widget-view+json" not in outputs


def no_secret_saved(nb, api, backend) -> None:
    saved = json.dumps(nb.save())
    token = KeyringStore(backend).load(Profile(name="x", base_url=api.url))
    assert token is not None and token.refresh_token
    assert token.access_token not in saved and token.refresh_token not in saved
    for record in api.requests():  # every access token the API saw
        for _, value in record["raw_headers"]:
            if value.startswith("Bearer "):
                assert value[7:] not in saved


def test_device_panel_run_all_and_expiry_in_place(notebook, kernel, provider, secret_service_keyring):
    idp, api = provider
    nb = notebook(
        [
            *oauth_login_cells("device", idp, api),
            # The refresh token is revoked at the provider and the access token runs out.
            "import requests, time\nfrom session_magics import magics\n"
            "_t = magics._instance.session().token\n"
            f'requests.post("{idp.issuer}/token/revocation", '
            'data={"token": _t.refresh_token, "client_id": "notebook"}).raise_for_status()\n'
            "while not _t.is_expired(0):\n    time.sleep(0.1)\n"
            'del _t\nprint("EXPIRED")',
            "%%api -o me2\nGET /me",
            'print("NEXT2", me2.status_code, me2.data["sub"])',
        ],
        kernel,
    )
    nb.run_all()
    panel = panel_in(nb, 1)
    link = panel.locator("a").first.get_attribute("href")
    code = panel.locator(".session-magics-user-code").inner_text().strip()
    assert link and code and code in link  # verification_uri_complete
    assert "expires in" in panel.inner_text()
    assert nb.prompts()[1] == "[*]:" and "NEXT" not in nb.outputs()[2]
    Person("ada").approve_device(link)
    nb.wait_for_output(1, "Logged in as ada")
    nb.wait_for_output(2, "NEXT ada")
    nb.wait_for_output(3, "EXPIRED")
    panel = panel_in(nb, 4)  # the same panel, in the running %%api cell
    assert nb.prompts()[4] == "[*]:" and "NEXT2" not in nb.outputs()[5]
    Person("ada").approve_device(panel.locator("a").first.get_attribute("href"))
    nb.wait_for_output(4, "200 OK")
    nb.wait_for_output(5, "NEXT2 200 ada")
    no_panel_left(nb)
    no_secret_saved(nb, api, secret_service_keyring)


def test_code_flow_sign_in_in_the_browser(notebook, kernel, provider, secret_service_keyring):
    idp, api = provider
    nb = notebook(
        [
            *oauth_login_cells("code", idp, api),
        ],
        kernel,
    )
    nb.run_all()
    panel = panel_in(nb, 1)
    with nb.page.context.expect_page() as opened:
        panel.locator("a.session-magics-sign-in").click()
    tab = opened.value
    tab.wait_for_selector("input[name=login]")
    tab.fill("input[name=login]", "bob")
    tab.fill("input[name=password]", "correct horse")
    tab.click("button[type=submit]")
    tab.wait_for_selector("button[type=submit]")  # the consent page
    tab.click("button[type=submit]")
    tab.wait_for_function("() => document.body.innerText.includes('Signed in')")
    assert tab.url.startswith("http://127.0.0.1:") and "/callback?" in tab.url
    nb.wait_for_output(1, "Logged in as bob")
    nb.wait_for_output(2, "NEXT bob")
    tab.close()
    no_panel_left(nb)
    no_secret_saved(nb, api, secret_service_keyring)


def cloned_project(tmp_path, idp, api, flow: str) -> tuple[Any, Any, str]:
    """A cloned repository whose pyproject.toml names ``idp`` as the issuer of the profile
    ``work`` (tokens in memory), and a user config directory of the kernel's own;
    returns (project folder, XDG_CONFIG_HOME, the first cell: into the project, load)."""
    project = tmp_path / "cloned-repo"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[tool.session_magics.profiles.work]\n"
        f'base_url = "{api.url}"\noauth = "{flow}"\nissuer = "{idp.issuer}"\n'
        'client_id = "notebook"\nscope = "openid profile"\nno_keyring = true\n'
    )
    xdg = tmp_path / "xdg"
    setup = (
        f"import os\nos.chdir({str(project)!r})\nos.environ['XDG_CONFIG_HOME'] = {str(xdg)!r}\n"
        "%load_ext session_magics"
    )
    return project, xdg, setup


def approval_asked(nb, idp):
    """The approval panel in %login's cell (cell 1), checked as a person reads it, while
    the issuer has heard nothing; returns its unticked checkbox."""
    panel = panel_in(nb, 1)
    panel.get_by_text(f"Credentials go to {idp.issuer} — set by ./pyproject.toml").wait_for()
    panel.get_by_text(f"Send my credentials to {idp.issuer} (remembered for this project)").wait_for()
    box = panel.locator("input[type=checkbox]").first
    assert not box.is_checked() and nb.prompts()[1] == "[*]:"
    assert idp.proxy is not None and idp.proxy.requests() == []  # not even discovery
    return box


def approved_origins(xdg) -> dict[str, list[str]]:
    import tomllib

    path = xdg / "session-magics" / "config.toml"
    if not path.exists():
        return {}
    return dict(tomllib.loads(path.read_text()).get("approved_credential_origins", {}))


def test_a_projects_issuer_is_approved_in_the_cell_before_anything_reaches_it(
    notebook, kernel, idp_factory, oauth_api_factory, tmp_path
):
    """Device flow: Run All stops at a panel naming the project's issuer, with a checkbox;
    the issuer (behind a recording proxy) hears nothing until the tick; then the device
    panel, the login, the next cell, and the approval kept in the user's config file.
    Tokens stay in memory."""
    idp = idp_factory(recorded=True)
    api = oauth_api_factory(idp)
    project, xdg, setup = cloned_project(tmp_path, idp, api, "device")
    nb = notebook([setup, "%login --profile work", WHO_AM_I], kernel)
    nb.run_all()
    box = approval_asked(nb, idp)
    box.check()
    device = nb.page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(".session-magics-user-code")
    device.wait_for(state="visible", timeout=30_000)
    link = (
        nb.page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(f"{PANEL} a").last.get_attribute("href")
    )
    assert link and device.inner_text().strip() in link
    Person("ada").approve_device(link)
    out = nb.wait_for_output(1, re.escape(f"credentials go to {idp.issuer} (set by ./pyproject.toml)"))
    assert "Logged in as ada" in out
    nb.wait_for_output(2, "NEXT ada")
    assert approved_origins(xdg) == {str(project.resolve()): [idp.issuer]}


def test_a_projects_issuer_for_the_code_flow_is_approved_then_the_person_signs_in(
    notebook, kernel, idp_factory, oauth_api_factory, tmp_path
):
    """Code flow: the same approval panel; no "Sign in" link and no request to the issuer
    before the tick. After it, discovery, then the link: it opens the provider's own
    sign-in page in a new tab, where the person types name and password and consents; the
    provider sends the browser to the kernel's loopback listener, the cell completes, the
    next cell runs, and the approval is kept in the user's config file."""
    idp = idp_factory(recorded=True)
    api = oauth_api_factory(idp)
    project, xdg, setup = cloned_project(tmp_path, idp, api, "code")
    nb = notebook([setup, "%login --profile work", WHO_AM_I], kernel)
    nb.run_all()
    box = approval_asked(nb, idp)
    cell = nb.page.locator(".jp-Notebook .jp-CodeCell").nth(1)
    assert cell.locator("a.session-magics-sign-in").count() == 0  # no sign-in before the approval
    assert approved_origins(xdg) == {}
    nb.screenshot(f"oauth-code-approval-{kernel}-asked")
    box.check()
    sign_in = cell.locator("a.session-magics-sign-in")
    sign_in.wait_for(state="visible", timeout=30_000)
    heard = idp.proxy.requests()
    assert heard and heard[0]["path"] == "/.well-known/openid-configuration"  # discovery: after the tick
    assert approved_origins(xdg) == {str(project.resolve()): [idp.issuer]}
    href = sign_in.get_attribute("href") or ""
    assert href.startswith(f"{idp.issuer}/auth?") and "code_challenge_method=S256" in href
    with nb.page.context.expect_page() as opened:
        sign_in.click()
    tab = opened.value
    tab.locator("input[name=login]").press_sequentially("bob", delay=20)
    tab.locator("input[name=password]").press_sequentially("correct horse", delay=20)
    tab.get_by_role("button", name="Sign-in").click()
    tab.get_by_role("button", name="Continue").click()  # the consent page
    tab.wait_for_function("() => document.body.innerText.includes('Signed in')")
    assert tab.url.startswith("http://127.0.0.1:") and "/callback?" in tab.url
    out = nb.wait_for_output(1, re.escape(f"credentials go to {idp.issuer} (set by ./pyproject.toml)"))
    assert "Logged in as bob" in out
    nb.wait_for_output(2, "NEXT bob")
    tab.close()
    assert approved_origins(xdg) == {str(project.resolve()): [idp.issuer]}


def test_cancel_at_a_projects_issuer_ends_with_one_line_and_sends_nothing(
    notebook, kernel, idp_factory, oauth_api_factory, tmp_path
):
    """Cancel in the approval panel: the cell ends with one line saying nothing was sent and
    who is not logged in; Run All stops there; the issuer heard nothing, nothing is approved."""
    idp = idp_factory(recorded=True)
    api = oauth_api_factory(idp)
    _, xdg, setup = cloned_project(tmp_path, idp, api, "code")
    nb = notebook([setup, "%login --profile work", WHO_AM_I], kernel)
    nb.run_all()
    approval_asked(nb, idp)
    panel_in(nb, 1).get_by_role("button", name="Cancel").click()
    out = nb.wait_for_output(1, "SessionExpired")
    errors = [line for line in out.splitlines() if line.startswith("SessionExpired")]
    assert len(errors) == 1 and "Traceback" not in out, out
    assert out.count("Not approved") == 1, out  # the panel is gone: the error line says it once
    assert errors[0].startswith(f"SessionExpired: Not approved: nothing was sent to {idp.issuer};")
    assert errors[0].endswith("is not logged in."), errors
    nb.wait_for_prompt(1, r"\[\d+\]:")
    nb.wait_for_prompt(2, r"^\[ \]:$")  # Run All stopped at the error
    assert "NEXT" not in nb.outputs()[2]
    assert idp.proxy is not None and idp.proxy.requests() == []
    assert api.requests() == []
    assert approved_origins(xdg) == {}
