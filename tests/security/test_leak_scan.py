"""A whole session through a real InteractiveShell, then a search of everything it left.

Scenario: login (the password from an environment variable, the URL from {{...}}),
requests (verbose, redirected, failing), a refresh, an expiry with a new login from the
environment variable, a logout with revocation, all in IPython's Verbose xmode with
output logging on. Artefacts searched: the history database (its rows and its raw
bytes), stdout/stderr, every display bundle, every log record at DEBUG, and a notebook
(.ipynb, written with nbformat) made of the cells and their outputs. Needles: the
password and every access token, refresh token and key the demo API issued.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from urllib.parse import quote_plus

import nbformat

from tests.security.helpers import DEMO_PASSWORD, PASSWORD_ENV, issued_secrets, secret_needles


def notebook_cell(source: str, run, execution_count: int):
    """A code cell with the outputs a frontend would have kept for this run."""
    cell = nbformat.v4.new_code_cell(source, execution_count=execution_count)
    outputs = []
    if run.stdout:
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=run.stdout))
    if run.stderr:
        outputs.append(nbformat.v4.new_output("stream", name="stderr", text=run.stderr))
    for bundle in run.displayed:
        data = {k: v for k, v in bundle.items() if isinstance(k, str) and "/" in k}
        outputs.append(nbformat.v4.new_output("display_data", data=json.loads(json.dumps(data, default=str))))
    if run.error is not None:
        render = getattr(run.error, "_render_traceback_", None)
        traceback = render() if render else [repr(run.error)]
        outputs.append(
            nbformat.v4.new_output(
                "error", ename=type(run.error).__name__, evalue=str(run.error), traceback=traceback
            )
        )
    cell.outputs = outputs
    return cell


def test_no_secret_in_any_artefact_of_a_whole_session(api, kr, new_shell, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    shell = new_shell()
    shell.ip.history_manager.db_log_output = True  # the output history is searched too
    cells: list[str] = [
        "%xmode Verbose",
        f"API = {api.url!r}",
        f"%login {{{{API}}}} --user demo --password-env {PASSWORD_ENV} --revoke /auth/revoke",
        "%login --status",
        "%%api -v -o me\nGET /me",
        "me",
        "me.headers_text()",
        "me.response.request.headers",
        "%%api\nGET /penguins?per_page=5",
        '%%api\nPOST /echo\n\n{"note": "hello"}',
        "%%api -v\nGET /redirect?to=/me&status=302",
        "%%api\nGET /status/503?retry_after=0",
        "%%api --timeout 0.3\nGET /slow?seconds=2",
        "%%api\nGET http://127.0.0.1:9/refused",
        "@refresh",  # the server's clock passes the access token's expiry
        "%%api -o after_refresh\nGET /me",
        "@expire",  # ... and the refresh token's: a new login from the environment variable
        "%%api -o after_login\nGET /me",
        "%login --status",
        "from session_magics import magics\nmagics._instance.sessions",
        "%logout",
        "%login --status",
    ]
    nb = nbformat.v4.new_notebook()
    texts: list[str] = []
    runs = []
    count = 0
    for source in cells:
        if source == "@refresh":
            api.advance_clock(301)
            continue
        if source == "@expire":
            api.advance_clock(4000)
            continue
        run = shell.run(source)
        runs.append((source, run))
        count += 1
        nb.cells.append(notebook_cell(source, run, count))
        texts += [run.stdout, run.stderr, json.dumps(run.displayed, default=str), repr(run.result)]
        if run.result is not None:
            texts.append(json.dumps(shell.ip.display_formatter.format(run.result)[0], default=str))

    # The scenario did what it says.
    by_source = dict(runs)
    assert by_source["%%api -o after_refresh\nGET /me"].error is None
    assert shell.ip.user_ns["after_refresh"].status_code == 200
    assert shell.ip.user_ns["after_login"].status_code == 200
    stats = api.stats()
    assert stats["password_grants"] == 2 and stats["refresh_grants"] >= 1, stats
    assert stats["revocations"] >= 1
    assert "Logged out" in by_source["%logout"].stdout
    assert by_source["%%api --timeout 0.3\nGET /slow?seconds=2"].error is not None

    # Every artefact.
    notebook_path = tmp_path / "session.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, str(notebook_path))
    shell.ip.history_manager.writeout_cache()
    history_path = Path(shell.ip.history_manager.hist_file)
    db = sqlite3.connect(history_path)
    rows = [
        str(row)
        for table in ("sessions", "history", "output_history")
        for row in db.execute(f"select * from {table}").fetchall()  # noqa: S608
    ]
    db.close()
    assert any("%login" in row for row in rows) and any("/me → 200" in row for row in rows)
    logs = [
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    ]
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    artefacts = {
        "stdout/stderr/displays": "\n".join(texts),
        "history rows": "\n".join(rows),
        "history bytes": history_path.read_bytes().decode("latin-1"),
        "notebook": notebook_path.read_text(),
        "log records": "\n".join(logs),
    }

    secrets = [DEMO_PASSWORD, quote_plus(DEMO_PASSWORD), *issued_secrets(api.state)]
    assert len(issued_secrets(api.state)) >= 6  # two logins and a refresh: access + refresh each
    hits = [
        (name, needle[:6])
        for name, text in artefacts.items()
        for secret in secrets
        for needle in secret_needles(secret)
        if needle in text
    ]
    assert hits == [], hits
