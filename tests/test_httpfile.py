"""%api --file: requests kept in a VS Code REST Client / JetBrains .http file (tests/data/demo.http),
with environments, private values and system variables, run against the demo API on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from session_magics.httpfile import HttpFileError, parse_http_file, substitute
from tests.ipython_helpers import demo_shell, login_demo

DATA = Path(__file__).resolve().parent / "data"
PRIVATE_KEY = "private-client-key-5f1c9e"


@pytest.fixture
def folder(tmp_path, api):
    """demo.http with its environment files, next to each other as those tools keep them."""
    where = tmp_path / "requests"
    where.mkdir()
    shutil.copy(DATA / "demo.http", where / "demo.http")
    (where / "http-client.env.json").write_text(
        json.dumps({"local": {"host": api.url}, "prod": {"host": "https://api.example.invalid"}})
    )
    (where / "http-client.private.env.json").write_text(json.dumps({"local": {"clientKey": PRIVATE_KEY}}))
    (where / ".env").write_text("# notes\nexport NOTE='from the dotenv file'\n")
    return where


@pytest.fixture
def shell(tmp_path, monkeypatch, kr, api):
    monkeypatch.setenv("DEMO_USER", "analyst")
    with demo_shell(tmp_path, monkeypatch) as sh:
        login_demo(sh, api)
        yield sh


def test_named_request_with_the_stored_token(folder, shell):
    run = shell.run(f"%api --file {folder}/demo.http me --env local")
    assert run.error is None, run.all_text
    assert run.result.status_code == 200 and run.result.data["username"] == "demo"


def test_request_named_by_its_separator_with_all_and_df(folder, shell):
    run = shell.run(
        f"df = %api --file {folder}/demo.http List penguins of one species --env local --all --df"
    )
    assert run.error is None, run.all_text
    df = shell.ip.user_ns["df"]
    assert len(df) == 124 and set(df["species"]) == {"Gentoo"}


def test_system_variables_environment_and_private_values(folder, shell, api):
    shell.ip.user_ns["kind"] = "field note"
    cell = (
        "%%api --file {}/demo.http createNote --env local -v\nX-Request-Id: fixed-{{{{1 + 1}}}}\nX-Extra: yes"
    )
    before = time.time()
    run = shell.run(cell.format(folder))
    assert run.error is None, run.all_text
    echo = run.result.data
    body = echo["json"]
    assert 1 <= body["id"] < 1000
    assert before - 1 <= body["at"] <= time.time() + 1
    assert (
        body["user"] == "analyst" and body["note"] == "from the dotenv file" and body["kind"] == "field note"
    )
    assert echo["headers"]["x-request-id"] == "fixed-2"  # the cell replaced the file's header
    assert echo["headers"]["x-extra"] == "yes"  # and added one
    assert echo["headers"]["x-client-key"] == PRIVATE_KEY  # sent as the file says
    # ... but never shown: not in the display, the -v headers, the repr or the summary line
    bundle, _ = run.result._repr_mimebundle_()
    assert PRIVATE_KEY not in json.dumps(bundle)
    assert PRIVATE_KEY not in run.all_text and PRIVATE_KEY not in repr(run.result)
    assert "●●●●" in bundle["text/plain"]
    assert "http-client.private.env.json keeps secrets in a plain file" in run.stderr
    assert "%login URL --token" in run.stderr
    again = shell.run(cell.format(folder))
    assert again.error is None and "plain file" not in again.stderr  # said once


def test_a_request_with_its_own_authorization_is_sent_as_written(folder, shell, api):
    api.reset_stats()
    run = shell.run(f"%api --file {folder}/demo.http withOwnAuth --env local")
    assert run.error is None, run.all_text
    assert run.result.status_code == 401  # the file's token, not the stored one
    stats = api.stats()
    assert stats["unauthorized"] == 1 and stats["refresh_grants"] == 0 and stats["password_grants"] == 0


def test_errors_name_the_file_and_what_is_there(folder, shell):
    run = shell.run(f"%api --file {folder}/demo.http nope --env local")
    assert "no request named 'nope' in demo.http (named: List penguins of one species, me, createNote" in str(
        run.error
    )
    run = shell.run(f"%api --file {folder}/demo.http me --env staging")
    assert "no environment 'staging' (environments: local, prod)" in str(run.error)
    run = shell.run(f"%api --file {folder}/demo.http chained --env local")
    assert "values from another request's answer are not supported" in str(run.error)
    run = shell.run(f"%api --file {folder}/demo.http --env local")
    assert "holds 5 requests: name one" in str(run.error)
    run = shell.run("%api GET /me --env local")
    assert "--env chooses an environment of an .http file" in str(run.error)
    run = shell.run(f"%api --file {folder}/missing.http me")
    assert "missing.http" in str(run.error)


def test_private_values_are_hidden_in_errors_too(folder, shell):
    (folder / "http-client.private.env.json").write_text(
        json.dumps({"local": {"clientKey": PRIVATE_KEY, "host": f"http://{PRIVATE_KEY}.invalid"}})
    )
    run = shell.run(f"%api --file {folder}/demo.http me --env local")
    assert run.error is not None
    assert PRIVATE_KEY not in str(run.error) and PRIVATE_KEY not in run.all_text


def test_rest_client_settings_with_comments_and_shared_values(tmp_path, api, shell):
    project = tmp_path / "project"
    (project / ".vscode").mkdir(parents=True)
    (project / "api").mkdir()
    (project / ".vscode" / "settings.json").write_text(
        "{\n  // REST Client environments\n"
        '  "rest-client.environmentVariables": {\n'
        '    "$shared": {"perPage": "100"},\n'
        f'    "local": {{"baseUrl": "{api.url}",}},  /* trailing commas are fine */\n'
        "  },\n}\n"
    )
    (project / "api" / "penguins.http").write_text(
        "GET {{baseUrl}}/penguins?per_page={{perPage}}&island={{island}}\n"
    )
    shell.ip.user_ns["island"] = "Biscoe"
    run = shell.run(f"df = %api --file {project}/api/penguins.http --env local --all --df")
    assert run.error is None, run.all_text
    assert set(shell.ip.user_ns["df"]["island"]) == {"Biscoe"} and len(shell.ip.user_ns["df"]) == 168


def test_parse_blocks_names_variables_and_handlers():
    parsed = parse_http_file((DATA / "demo.http").read_text(), DATA / "demo.http")
    assert parsed.names() == ["List penguins of one species", "me", "createNote", "withOwnAuth", "chained"]
    assert parsed.variables == {"baseUrl": "{{host}}", "species": "Gentoo"}
    note = parsed.find("createNote")
    text = "\n".join(note.lines)
    assert "client.global" not in text and "{%" not in text  # the response handler is left out
    assert note.first_line == 16  # file lines, for messages


def test_substitute_system_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_VAR", "v1")
    out = substitute("{{$processEnv SM_VAR}} {{$env.SM_VAR}} {{$randomInt 5 6}} {{left}}", {}, tmp_path)
    assert out == "v1 v1 5 {{left}}"  # an unknown name stays for Python
    with pytest.raises(HttpFileError, match="not set"):
        substitute("{{$processEnv SM_NOT_SET_ANYWHERE}}", {}, tmp_path)
    with pytest.raises(HttpFileError, match="loop"):
        substitute("{{a}}", {"a": "{{b}}", "b": "{{a}}"}, tmp_path)
