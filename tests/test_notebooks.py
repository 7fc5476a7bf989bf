"""The notebooks in notebooks/ executed headlessly with nbclient (a real kernel)."""

from __future__ import annotations

import secrets
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from session_magics.demo import DemoServer

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    """The kernel inherits this process's environment (and so its D-Bus Secret Service)."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    return monkeypatch


def run_notebook(nb, timeout=120):
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def run_bundled_notebook(name, kernel_env):
    """notebooks/NAME run against a demo API of its own (random password, given to the
    kernel as DEMO_PASSWORD): the executed notebook, the API's statistics, the (stopped) API."""
    password = "pw-" + secrets.token_hex(8)
    with DemoServer(password=password) as api:
        kernel_env.setenv("SESSION_MAGICS_DEMO_URL", api.url)
        kernel_env.setenv("DEMO_PASSWORD", password)
        nb = run_notebook(nbformat.read(NOTEBOOKS / name, as_version=4))
        return nb, api.stats(), api


def outputs_text(nb):
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
            parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def test_quickstart_runs_headless_with_password_env(secret_service_keyring, kernel_env):
    nb, stats, api = run_bundled_notebook("quickstart.ipynb", kernel_env)
    password = api.config.password
    text = outputs_text(nb)
    assert "Logged in as demo" in text
    assert "Gentoo" in text and "Adelie" in text and "Chinstrap" in text  # --all: every species
    assert stats["password_grants"] == 1
    assert password not in text
    # nothing secret in the notebook as it would be saved
    saved = nbformat.writes(nb)
    assert "eyJ" not in saved  # no JWT anywhere in outputs


def test_expired_session_without_credentials_fails_fast_in_nbclient(secret_service_keyring, kernel_env):
    """No widget frontend, no tty, no env var: SessionExpired/NoFrontendError at once, not a hang."""
    with DemoServer(access_ttl=300, refresh_ttl=600) as api:
        kernel_env.setenv("DEMO_PASSWORD", api.config.password)
        login = f"%load_ext session_magics\n%login {api.url} --user demo --password-env DEMO_PASSWORD"
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(login)]
        run_notebook(nb)
        api.advance_clock(10_000)  # both tokens expired on the server
        kernel_env.delenv("DEMO_PASSWORD")
        nb2 = nbformat.v4.new_notebook()
        nb2.cells = [
            nbformat.v4.new_code_cell(f"%load_ext session_magics\n%login {api.url}"),
            nbformat.v4.new_code_cell("%%api\nGET /me"),
            nbformat.v4.new_code_cell("print('NOT REACHED')"),
        ]
        with pytest.raises(CellExecutionError) as info:
            run_notebook(nb2)
    # NoFrontendError is raised before any wait. A cell that waited for a form would end
    # otherwise: in SessionExpired "No login within 300 s" (login_timeout), or first in
    # nbclient's CellTimeoutError, which is not a CellExecutionError.
    assert "Already logged in" in outputs_text(nb2)  # the stored token was reused first
    assert "NoFrontendError" in str(info.value) and "nobody can be asked" in str(info.value)
    assert "Session expired" in str(info.value) and "No login within" not in str(info.value)
    assert "NOT REACHED" not in outputs_text(nb2)


def test_explore_notebook_paginates_extracts_and_plots(secret_service_keyring, kernel_env):
    """notebooks/explore.ipynb: --all --df to one DataFrame of all 344 penguins, --extract, a plot."""
    nb, stats, api = run_bundled_notebook("explore.ipynb", kernel_env)
    password = api.config.password
    outputs = {cell.source.splitlines()[0]: cell.outputs for cell in nb.cells if cell.cell_type == "code"}

    def plain(first_line):
        return "\n".join(
            str(out.get("data", {}).get("text/plain", "")) + out.get("text", "")
            for out in outputs[first_line]
        )

    assert "(344, 9)" in plain("penguins = %api GET /penguins?per_page=50 --all --df")
    assert "(4, 344, 200)" in plain("len(by_cursor.pages), len(by_cursor.records), by_cursor.status_code")
    gentoo = plain("%api GET /penguins --all --extract \"[?species=='Gentoo'].body_mass_g | avg(@)\"")
    assert 5000 < float(gentoo.strip().splitlines()[-1]) < 5100  # 5076 g on average
    dream = next(key for key in outputs if key.startswith("%%api --all --df --extract"))
    assert "[124 rows x 3 columns]" in plain(dream)
    plots = [out for out in outputs["import matplotlib.pyplot as plt"] if "image/png" in out.get("data", {})]
    assert len(plots) == 1
    assert stats["requests_by_path"]["/penguins"] == 7 + 18 + 4  # --all walked every page
    assert stats["requests_by_path"]["/penguins/cursor"] == 4 + 4

    def containing(text):
        cell = next(c for c in nb.cells if c.cell_type == "code" and text in c.source)
        return "\n".join(
            str(out.get("data", {}).get("text/plain", "")) + out.get("text", "") for out in cell.outputs
        )

    # Pages at once, against the demo API with 50 ms latency; the same frame one by one.
    at_once = containing("records = %api GET /records?n=3000&per_page=100 --all --df")
    assert "(3000, 5)" in at_once and "30 pages · 3,000 records" in at_once and "· 4 at a time" in at_once
    one_by_one = containing("--concurrency 1")
    assert one_by_one.rstrip().endswith("True") and "at a time" not in one_by_one
    cursor = containing("%api GET /penguins/cursor?limit=100 --all")
    assert "one page at a time: each page names the next by a cursor" in cursor
    assert stats["requests_by_path"]["/records"] == 30 + 30
    # GraphQL: variables from Python, Relay pages, errors shown as errors.
    assert "Dream" in containing("%%api -o chinstrap")
    relay = containing("%%api --all --df -o all_penguins")
    assert "[344 rows x 3 columns]" in relay and "4 pages · 344 records" in relay
    sizes = containing('all_penguins.groupby(["species", "sex"]).size()')
    assert "Adelie" in sizes and "female" in sizes
    error = containing("{ penguin(id: 999) { id species } }")
    assert "GraphQL error: No penguin with id 999 (path penguin, line 1:3)" in error
    assert stats["requests_by_path"]["/graphql"] == 1 + 4 + 1
    assert stats["password_grants"] == 1
    text = outputs_text(nb)
    assert "Logged in as demo" in text
    assert "page/s" not in text  # the progress bars were emptied when done
    assert api.url in plain("%login --status")
    assert password not in text
    assert "eyJ" not in nbformat.writes(nb)  # no JWT anywhere in outputs


def test_oauth_notebook_runs_headless_with_client_credentials(
    secret_service_keyring, kernel_env, idp, oauth_api_factory
):
    """notebooks/oauth.ipynb against the test provider, as CI runs it: client credentials."""
    from tests.idp.servers import CLIENT_SECRET

    api = oauth_api_factory(idp)
    kernel_env.setenv("OAUTH_API_URL", api.url)
    kernel_env.setenv("OAUTH_ISSUER", idp.issuer)
    kernel_env.setenv("OAUTH_FLOW", "client")
    kernel_env.setenv("OAUTH_CLIENT_SECRET", CLIENT_SECRET)
    nb = run_notebook(nbformat.read(NOTEBOOKS / "oauth.ipynb", as_version=4))
    text = outputs_text(nb)
    assert "Logged in as robot" in text and f"via {idp.issuer}" in text
    assert "subject: None | client: robot | scope: read" in text
    assert "Logged out of" in text
    tokens = [v[7:] for r in api.requests() for k, v in r["raw_headers"] if v.startswith("Bearer ")]
    assert tokens and api.statuses() == [200]
    saved = nbformat.writes(nb)
    assert CLIENT_SECRET not in saved and not any(t in saved for t in tokens)
    assert idp.introspect(tokens[0])["active"] is False  # %logout revoked it


def test_oauth_notebook_without_a_provider_says_what_to_set(kernel_env):
    """Opened without `make demo-oauth` (from `make demo`, which starts no identity
    provider): the first cell stops the notebook saying what starts one and what to set,
    not with a KeyError."""
    for name in ("OAUTH_API_URL", "OAUTH_ISSUER", "OAUTH_FLOW"):
        kernel_env.delenv(name, raising=False)
    nb = nbformat.read(NOTEBOOKS / "oauth.ipynb", as_version=4)
    with pytest.raises(CellExecutionError) as failed:
        run_notebook(nb)
    message = str(failed.value)
    assert "`make demo-oauth` starts both and sets OAUTH_API_URL and OAUTH_ISSUER" in message, message
    assert "`make demo` starts no provider" in message and "KeyError" not in message, message
    assert "`make demo-oauth` starts both" in nb.cells[0].source  # the notebook's first words say so too
