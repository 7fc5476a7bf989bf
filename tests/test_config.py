"""Settings and profiles from pyproject.toml [tool.session_magics] and the user config file."""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from session_magics.config import ConfigError, find_project_table, read, user_config_file
from tests.ipython_helpers import dispose, shell_factory

PASSWORD_ENV = "SM_CONFIG_PASSWORD"
SETTINGS = ("timeout", "leeway", "max_pages", "cursor_param", "use_keyring", "allow_plaintext_keyring")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def touch_later(path, text):
    """Rewrite a file so that its modification time surely changes."""
    before = path.stat().st_mtime_ns
    write(path, text)
    while path.stat().st_mtime_ns == before:
        time.sleep(0.01)
        os.utime(path)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """A project with a nested working directory, and an empty XDG config home."""
    project = tmp_path / "project"
    work = project / "notebooks" / "deep"
    work.mkdir(parents=True)
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.chdir(work)
    return project, work, xdg


# -- reading files -------------------------------------------------------------------


def test_user_file_honours_xdg_config_home(tmp_path):
    assert user_config_file({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "session-magics" / "config.toml"
    home = user_config_file({})
    assert home.parts[-3:] == (".config", "session-magics", "config.toml")
    assert user_config_file({"XDG_CONFIG_HOME": "relative/dir"}) == home  # the spec: absolute only


def test_nearest_pyproject_with_our_table_wins(dirs):
    project, work, _ = dirs
    write(project / "pyproject.toml", "[tool.session_magics]\ntimeout = 12\n")
    write(project / "notebooks" / "pyproject.toml", '[project]\nname = "not-ours"\n')  # skipped
    found = find_project_table(work)
    assert found is not None and found[0] == project / "pyproject.toml"
    assert found[1] == {"timeout": 12}
    write(project / "notebooks" / "pyproject.toml", "[tool.session_magics]\ntimeout = 3\n")
    assert find_project_table(work)[1] == {"timeout": 3}


@pytest.mark.parametrize(
    "text",
    [
        "[tool.session_magics]\ntimeout = 4\n",
        '[tool."session_magics"]\ntimeout = 4\n',
        "[tool]\nsession_magics.timeout = 4\n",
        "[tool]\nsession_magics = { timeout = 4 }\n",
        "tool.session_magics.timeout = 4\n",
    ],
)
def test_every_toml_spelling_of_the_table_is_found(dirs, text):
    project, work, _ = dirs
    write(project / "pyproject.toml", text)
    assert read(work, settings=SETTINGS).settings == {"timeout": 4}


def test_a_pyproject_that_only_names_the_package_is_not_parsed(dirs):
    project, work, _ = dirs
    # Not even valid TOML: a file that merely mentions the package must not be parsed at all.
    write(project / "pyproject.toml", '[tool.hatch]\npackages = ["session_magics"\n')
    assert find_project_table(work) is None


def test_project_overrides_user_settings_and_profiles(dirs):
    project, work, xdg = dirs
    write(
        xdg / "session-magics" / "config.toml",
        """
        timeout = 40
        leeway = 5
        allow_plaintext_keyring = false

        [profiles.prod]
        base_url = "https://user.example.com"
        user = "me"

        [profiles.mine]
        base_url = "https://mine.example.com"
        """,
    )
    write(
        project / "pyproject.toml",
        """
        [tool.session_magics]
        timeout = 60

        [tool.session_magics.profiles.prod]
        base_url = "https://project.example.com/v1"
        login = "/oauth/token"
        expired_status = [401, 403]
        password_env = "PROD_PASSWORD"
        """,
    )
    cfg = read(work, settings=SETTINGS)
    assert cfg.settings == {"timeout": 60, "leeway": 5, "allow_plaintext_keyring": False}
    assert cfg.profiles["prod"] == {
        "base_url": "https://project.example.com/v1",
        "login": "/oauth/token",
        "expired_status": "401,403",
        "password_env": "PROD_PASSWORD",
    }
    assert cfg.profiles["mine"]["base_url"] == "https://mine.example.com"
    assert cfg.source("setting", "timeout") == str(project / "pyproject.toml")
    assert cfg.source("setting", "leeway") == str(xdg / "session-magics" / "config.toml")


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("profile", "password"),
        ("profile", "token"),
        ("profile", "refresh_token"),
        ("profile", "client-secret"),
        ("settings", "api_key"),
        ("settings", "secret"),
    ],
)
def test_secret_keys_are_refused_and_their_value_never_shown(dirs, where, key):
    project, work, _ = dirs
    value = "hunter2-do-not-show"
    if where == "profile":
        text = f'[tool.session_magics.profiles.prod]\nbase_url = "https://x.example"\n{key} = "{value}"\n'
    else:
        text = f'[tool.session_magics]\n{key} = "{value}"\n'
    write(project / "pyproject.toml", text)
    with pytest.raises(ConfigError) as info:
        read(work, settings=SETTINGS)
    message = str(info.value)
    assert repr(key) in message and "never read from configuration files" in message
    assert "password_env" in message  # says what to do instead
    assert value not in message


def test_env_var_names_are_not_secrets(dirs):
    project, work, _ = dirs
    write(
        project / "pyproject.toml",
        '[tool.session_magics.profiles.ci]\nbase_url = "https://ci.example"\n'
        'token_env = "CI_TOKEN"\ntoken_mode = true\n',
    )
    assert read(work).profiles["ci"] == {
        "base_url": "https://ci.example",
        "token_env": "CI_TOKEN",
        "token_mode": True,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[tool.session_magics]\ntimout = 3\n", "unknown setting 'timout'"),
        ('[tool.session_magics.profiles.p]\nuser = "x"\n', "base_url is missing"),
        ('[tool.session_magics.profiles.p]\nbase_url = "https://x"\nusr = "x"\n', "unknown key 'usr'"),
        ('[tool.session_magics.profiles.p]\nbase_url = "https://x"\nno_keyring = "yes"\n', "must be a bool"),
        ('[tool.session_magics.profiles.p]\nbase_url = "http://x"\nallow_http = true\n', "not by a project"),
        ('[tool.session_magics.approved_credential_origins]\n"/x" = ["https://y"]\n', "user file"),
        ("[tool.session_magics]\nallow_plaintext_keyring = true\n", "not by a project"),
        ("[tool.session_magics\n", "not valid TOML"),
    ],
)
def test_mistakes_are_clear_errors(dirs, text, expected):
    project, work, _ = dirs
    write(project / "pyproject.toml", text)
    with pytest.raises(ConfigError, match=expected) as info:
        read(work, settings=SETTINGS)
    assert str(project / "pyproject.toml") in str(info.value)


def test_plaintext_keyring_may_come_from_the_user_file(dirs):
    _, work, xdg = dirs
    write(xdg / "session-magics" / "config.toml", "allow_plaintext_keyring = true\n")
    assert read(work, settings=SETTINGS).settings == {"allow_plaintext_keyring": True}


# -- through IPython -----------------------------------------------------------------


@pytest.fixture
def shells(tmp_path, monkeypatch, kr):
    monkeypatch.setenv(PASSWORD_ENV, "penguins")
    with shell_factory(tmp_path) as make:
        yield make


def project_file(project, api, timeout=7):
    return write(
        project / "pyproject.toml",
        f"""
        [project]
        name = "analysis"

        [tool.session_magics]
        timeout = {timeout}
        max_pages = 4

        [tool.session_magics.profiles.demo]
        base_url = "{api.url}"
        user = "demo"
        password_env = "{PASSWORD_ENV}"
        revoke = "/auth/revoke"

        [tool.session_magics.profiles.staging]
        base_url = "https://staging.example.com/api"
        """,
    )


def test_settings_from_pyproject_and_config_wins(dirs, api, shells):
    project, _, _ = dirs
    path = project_file(project, api)
    shell = shells()
    magics = shell.magics
    assert magics.timeout == 7 and magics.max_pages == 4
    run = shell.run("%config SessionMagics.timeout = 30")
    assert run.error is None
    assert magics.timeout == 30
    touch_later(path, path.read_text().replace("timeout = 7", "timeout = 9").replace("max_pages = 4", ""))
    run = shell.run("%login --profile demo")  # reads the changed file
    assert run.error is None, run.all_text
    assert magics.timeout == 30  # explicit %config still wins
    assert magics.max_pages == 100  # removed from the file: back to the default


def test_config_set_before_loading_wins_too(dirs, api, tmp_path, kr, monkeypatch):
    project, _, _ = dirs
    project_file(project, api)
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipy"))
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(ipython_dir=str(tmp_path / "ipy"))
    try:
        ip.config.SessionMagics.timeout = 5.0  # as ipython_config.py would
        ip.run_line_magic("load_ext", "session_magics")
        from session_magics import magics

        assert magics._instance.timeout == 5.0
        assert magics._instance.max_pages == 4  # not set explicitly: from the file
    finally:
        ip.run_line_magic("unload_ext", "session_magics")
        dispose(ip)


def test_login_with_a_configured_profile_needs_no_url(dirs, api, shells):
    project, _, _ = dirs
    project_file(project, api)
    shell = shells()
    run = shell.run("%login --profile demo")
    assert run.error is None, run.all_text
    assert "Logged in as demo" in run.stdout and "profile 'demo'" in run.stdout
    session = shell.magics.sessions["demo"]
    assert session.profile.revoke == "/auth/revoke"
    assert session.profile.base_url == api.url + "/"
    assert session.timeout == 7
    run = shell.run("%%api\nGET /me")
    assert run.error is None and run.result.data["username"] == "demo"
    run = shell.run("%api GET /records?n=100&per_page=10 --all -q -o r")
    assert len(shell.ip.user_ns["r"].pages) == 4  # max_pages from the file


def test_options_on_the_line_win_over_the_profile(dirs, api, shells):
    project, _, _ = dirs
    project_file(project, api)
    shell = shells()
    run = shell.run("%login --profile demo --revoke /other/revoke --header X-Token --scheme Bearer")
    assert run.error is None, run.all_text
    profile = shell.magics.sessions["demo"].profile
    assert profile.revoke == "/other/revoke" and profile.header == "X-Token"
    assert profile.user == "demo"  # the rest still from the file


def test_status_lists_configured_profiles_too(dirs, api, shells):
    project, _, _ = dirs
    project_file(project, api)
    shell = shells()
    run = shell.run("%login --status")
    assert run.error is None, run.all_text
    lines = run.stdout.splitlines()
    assert any(line.strip().startswith("demo:") and "not logged in" in line for line in lines), lines
    assert any("staging:" in line and "https://staging.example.com/api/" in line for line in lines), lines
    assert all("configured in" in line and "pyproject.toml" in line for line in lines)
    shell.run("%login --profile demo")
    run = shell.run("%login --status")
    demo_line = next(line for line in run.stdout.splitlines() if "demo:" in line)
    assert "demo, token expires" in demo_line and demo_line.startswith("*")


def test_a_configured_profile_is_usable_after_a_restart_without_login(dirs, api, shells):
    project, _, _ = dirs
    project_file(project, api)
    assert shells().run("%login --profile demo").error is None
    shell = shells()  # a new kernel; the token is in the keyring
    run = shell.run("%%api --profile demo\nGET /me")
    assert run.error is None, run.all_text
    assert run.result.status_code == 200


def test_user_file_profile_and_no_url_message(dirs, api, shells):
    _, _, xdg = dirs
    write(
        xdg / "session-magics" / "config.toml",
        f'[profiles.home]\nbase_url = "{api.url}"\nuser = "demo"\npassword_env = "{PASSWORD_ENV}"\n',
    )
    shell = shells()
    run = shell.run("%login")
    assert run.error is not None and "configured: home" in str(run.error)
    run = shell.run("%login --profile home")
    assert run.error is None, run.all_text


def test_a_secret_in_the_file_is_reported_at_load_and_refused_at_login(dirs, api, shells):
    project, _, _ = dirs
    write(
        project / "pyproject.toml",
        f'[tool.session_magics.profiles.demo]\nbase_url = "{api.url}"\npassword = "penguins"\n',
    )
    shell = shells()
    shell.run("%unload_ext session_magics")
    run = shell.run("%load_ext session_magics")
    assert "configuration not used" in run.stderr and "'password'" in run.stderr
    run = shell.run("%login --profile demo")
    assert run.error is not None and type(run.error).__name__ == "ConfigError"
    assert "penguins" not in run.all_text
    assert "demo" not in shell.magics.sessions


def test_who_named_each_credential_endpoint_survives_completing_a_profile(dirs, shells):
    """The line, the user file and the project file each keep their name on the endpoints
    they set (trust.py asks before credentials go where only a project file points)."""
    from IPython.core.magic_arguments import parse_argstring

    project, _, xdg = dirs
    user = write(xdg / "session-magics" / "config.toml", 'login_path = "https://sso.example.com/token"\n')
    pyproject = write(
        project / "pyproject.toml",
        """
        [tool.session_magics.profiles.p]
        base_url = "https://api.example.com"
        refresh = "https://auth.example.com/refresh"
        revoke = "https://auth.example.com/revoke"
        """,
    )
    magics = shells().magics
    line = parse_argstring(magics.login, "--profile p --revoke https://line.example.com/revoke")
    profile = magics.profile_from_args(line)
    kinds = {key: (by.kind, by.file) for key, by in profile.set_by.items()}
    assert kinds == {"refresh": ("project", str(pyproject)), "login": ("user", str(user))}
    assert profile.revoke == "https://line.example.com/revoke"  # the line won, and is its own
    assert profile.credential_endpoint("revoke").set_by.kind == "line"
    assert profile.credential_endpoint("login").url == "https://sso.example.com/token"

    magics.sessions.pop("p", None)
    configured = magics.session("p")  # made from the file's table alone, no %login line
    assert {key: by.kind for key, by in configured.profile.set_by.items()} == {
        "refresh": "project",
        "revoke": "project",
        "login": "user",
    }
