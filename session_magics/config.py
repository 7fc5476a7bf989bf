"""Defaults from configuration files: settings and named profiles.

Two files are read, both optional:

* the **user file** ``$XDG_CONFIG_HOME/session-magics/config.toml`` (by default
  ``~/.config/session-magics/config.toml``): settings at the top level, profiles as
  ``[profiles.NAME]`` tables;
* the **project file**: the nearest ``pyproject.toml`` with a ``[tool.session_magics]``
  table, searching upwards from the kernel's working directory; settings in that
  table, profiles as ``[tool.session_magics.profiles.NAME]``.

::

    [tool.session_magics]
    timeout = 60
    max_pages = 500

    [tool.session_magics.profiles.prod]
    base_url = "https://api.example.com/v1"
    user = "analyst"
    login = "/oauth/token"
    password_env = "PROD_API_PASSWORD"   # the *name* of a variable, never a password

Settings have the names of the ``SessionMagics`` traits (``%config SessionMagics``
lists them). Profile keys are the ``%login`` options with underscores: base_url,
user, login, refresh, revoke, body, scheme, header, token_mode (``--token``),
password_env, token_env, access_field, refresh_field, expires_field,
expired_status, allow_http, no_keyring, and for OAuth oauth (the flow), issuer,
client_id, scope, client_secret_env, redirect_port, redirect_uri, token_url,
device_url, authorize_url, audience, resource. ``%login --profile prod`` then needs no
URL, and options given to ``%login`` win over the file.

Precedence: ``%config`` (and ``ipython_config.py``) > project file > user file >
built-in defaults; a project profile replaces a user profile of the same name. The
settings of each file are a traitlets ``Config``; traitlets merges them in that order
under the instance's own config (:meth:`FileConfig.over`), the way an IPython
application merges its config files under the command line.

Secrets never come from these files: a key that names one (password, token,
secret, api_key...) is refused with a :class:`ConfigError`, and no value is ever
shown in a message.

A project file cannot weaken anything (a repository someone cloned may hold one):
``allow_plaintext_keyring``, a profile's ``allow_http`` and the
``[approved_credential_origins]`` table are accepted from the user file only, and a
credential endpoint (``login``, ``refresh``, ``revoke``, the ``login_path`` setting)
that a project file puts on another origin than the API's is used only once the user
approved that origin (see :mod:`session_magics.trust`). ``no_keyring`` /
``use_keyring = false`` are accepted: they keep tokens out of the keyring, in memory.
The same holds for OAuth: ``issuer``, ``token_url``, ``device_url``, ``authorize_url``
and ``revoke`` name where credentials go (or where you sign in); on another origin than
the API's, a project file's value needs the user's approval of that origin first.

Loading costs a few ``stat`` calls; ``tomllib`` is imported only when a file has
something for us. The files are read again by ``%login`` when they changed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ProfileError, SessionMagicsError

if TYPE_CHECKING:
    from traitlets.config import Config

    from .magics import SessionMagics
    from .session import ApiSession

USER_FILE = Path("session-magics") / "config.toml"
PROJECT_TABLE = "tool.session_magics"
SECTION = "SessionMagics"  # the traitlets config section of the settings

#: Profile keys and the Python types their values may have.
PROFILE_KEYS: dict[str, tuple[type, ...]] = {
    "base_url": (str,),
    "user": (str,),
    "login": (str,),
    "refresh": (str,),
    "revoke": (str,),
    "body": (str,),
    "scheme": (str,),
    "header": (str,),
    "token_mode": (bool,),
    "password_env": (str,),
    "token_env": (str,),
    "access_field": (str,),
    "refresh_field": (str,),
    "expires_field": (str,),
    "expired_status": (int, list, str),
    "allow_http": (bool,),
    "no_keyring": (bool,),
    # OAuth 2.0 / OpenID Connect (%login --oauth ...)
    "oauth": (str,),
    "issuer": (str,),
    "client_id": (str,),
    "scope": (str,),
    "client_secret_env": (str,),
    "redirect_port": (int,),
    "redirect_uri": (str,),
    "token_url": (str,),
    "device_url": (str,),
    "authorize_url": (str,),
    "audience": (str,),
    "resource": (str,),
}
#: Keys whose names look like a secret's but hold none.
NOT_SECRETS = frozenset({"password_env", "token_env", "token_mode", "client_secret_env", "token_url"})
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "credential")
USER_ONLY_SETTINGS = frozenset({"allow_plaintext_keyring"})
#: Profile keys a project file may not set (they would weaken where secrets go).
USER_ONLY_PROFILE_KEYS = frozenset({"allow_http"})
#: Profile keys naming a credential endpoint (OAuth: the issuer, its endpoints, and the
#: sign-in page), and the setting that gives the default one.
ENDPOINT_KEYS = ("login", "refresh", "revoke", "issuer", "token_url", "device_url", "authorize_url")
#: Whether a pyproject.toml may hold our table ([tool.session_magics], [tool."session_magics"],
#: tool.session_magics.x = ..., or session_magics = ... under [tool]); the rest are not parsed.
#: For the benchmark table's %load_ext row in a project with a pyproject.toml (not ours): 8.4 ms
#: against 11.3 ms when every pyproject.toml is parsed (tomllib imported), 1.33× (benchmarks/variants.py).
_MENTIONS_US = re.compile(rb"""tool\s*\.\s*["']?session_magics|^\s*["']?session_magics["']?\s*[.=]""", re.M)


class ConfigError(SessionMagicsError):
    """A configuration file that cannot be used as it is."""


class FileConfig:
    """What the files say: settings, profiles, and where each came from."""

    def __init__(self) -> None:  # (a plain class: a dataclass costs more to define than to use)
        self.layers: list[Config] = []  # the settings of each file, as traitlets config
        self.profiles: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, str] = {}  # "setting:NAME" / "profile:NAME" -> file
        self.files: list[str] = []
        self.project_file: str | None = None

    def source(self, kind: str, name: str) -> str | None:
        return self.sources.get(f"{kind}:{name}")

    def over(self, config: Config | None = None) -> Config:
        """The files' settings under ``config``: traitlets merges the layers, each over
        the ones before it (user file, project file, then ``config``)."""
        from traitlets.config import Config

        merged = Config()
        for layer in (*self.layers, config or Config()):
            merged.merge(layer)
        return merged

    @property
    def settings(self) -> dict[str, Any]:
        """The files' settings, the project file's over the user file's."""
        return dict(self.over().get(SECTION, {}))


def user_config_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/session-magics/config.toml``, else under ``~/.config``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / USER_FILE


def _stat(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)


def _project_candidates(start: Path) -> Iterable[Path]:
    for directory in (start, *start.parents):
        yield directory / "pyproject.toml"


def signature(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> tuple[Any, ...]:
    """What the configuration depends on (files and their modification times), cheaply."""
    start = Path.cwd() if cwd is None else cwd
    seen: list[Any] = [str(start), _stat(user_config_file(environ))]
    for candidate in _project_candidates(start):
        stamp = _stat(candidate)
        if stamp is not None:
            seen.append(stamp)
    return tuple(seen)


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def find_project_table(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest pyproject.toml (upwards from ``start``) with a [tool.session_magics] table."""
    for candidate in _project_candidates(start):
        try:
            raw = candidate.read_bytes()
        except OSError:
            continue
        if not _MENTIONS_US.search(raw):  # cheap: most pyproject.toml files are not for us
            continue
        table = _parse(candidate, raw).get("tool", {}).get("session_magics")
        if isinstance(table, dict):
            return candidate, table
    return None


def _is_secret(key: str) -> bool:
    name = key.lower().replace("-", "_")
    if name in NOT_SECRETS:
        return False
    return any(word in name for word in SECRET_WORDS)


def _check_secrets(table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        if _is_secret(str(key)):
            raise ConfigError(
                f"{where} has a key named {key!r}: secrets are never read from configuration files "
                "(they end up in version control and backups). Name an environment variable instead "
                '(password_env = "VAR" or token_env = "VAR"), or let %login ask.'
            )
        if isinstance(value, Mapping):
            _check_secrets(value, f"{where}.{key}")


def _profile(name: str, options: Mapping[str, Any], where: str, *, project: bool = False) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: a profile is a table of %login options")
    out: dict[str, Any] = {}
    for key, value in options.items():
        key = key.replace("-", "_")
        if key == "url":
            key = "base_url"
        if project and key in USER_ONLY_PROFILE_KEYS:
            raise ConfigError(
                f"{where}: {key} can be given on the %login line (--allow-http) or in your user file "
                f"({user_config_file()}), not by a project"
            )
        types = PROFILE_KEYS.get(key)
        if types is None:
            known = ", ".join(PROFILE_KEYS)
            raise ConfigError(f"{where}: unknown key {key!r} (profile keys: {known})")
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            wanted = " or ".join("list" if t is list else t.__name__ for t in types)
            raise ConfigError(f"{where}: {key} must be a {wanted}")
        out[key] = value
    if "base_url" not in out:
        raise ConfigError(f"{where}: base_url is missing (the API's base URL)")
    status = out.get("expired_status")
    if status is not None:
        codes = status if isinstance(status, list) else str(status).split(",")
        try:
            out["expired_status"] = ",".join(str(int(str(c).strip())) for c in codes)
        except ValueError:
            raise ConfigError(f"{where}: expired_status takes status codes, e.g. [401, 403]") from None
    return out


def _table(
    cfg: FileConfig,
    table: Mapping[str, Any],
    path: Path,
    where: str,
    settings: Iterable[str] | None,
    *,
    project: bool,
) -> None:
    from .trust import APPROVALS_TABLE

    if APPROVALS_TABLE in table:
        if project:
            raise ConfigError(
                f"{path}: [{APPROVALS_TABLE}] is read from your user file ({user_config_file()}) only: "
                "a project cannot approve where credentials go"
            )
        table = {k: v for k, v in table.items() if k != APPROVALS_TABLE}  # read by trust.Approvals
    _check_secrets(table, where)
    known = set(settings) if settings is not None else None
    found: dict[str, Any] = {}
    for key, value in table.items():
        if key == "profiles":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}.profiles: expected tables [{where}.profiles.NAME]")
            for name, options in value.items():
                cfg.profiles[name] = _profile(
                    name, options, f"{path} [{where}.profiles.{name}]", project=project
                )
                cfg.sources[f"profile:{name}"] = str(path)
            continue
        if known is not None and key not in known:
            raise ConfigError(
                f"{path} [{where}]: unknown setting {key!r} (settings: {', '.join(sorted(known))})"
            )
        if project and key in USER_ONLY_SETTINGS:
            raise ConfigError(
                f"{path}: {key} can be set in your user file ({user_config_file()}) or with %config, "
                "not by a project"
            )
        found[key] = value
        cfg.sources[f"setting:{key}"] = str(path)
    from traitlets.config import Config

    cfg.layers.append(Config({SECTION: found}))


def read(
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    settings: Iterable[str] | None = None,
) -> FileConfig:
    """Read the user file, then the project file over it. ``settings``: the known setting names."""
    cfg = FileConfig()
    names = list(settings) if settings is not None else None
    user = user_config_file(environ)
    try:
        raw = user.read_bytes()
    except OSError:
        raw = None
    if raw is not None:
        _table(cfg, _parse(user, raw), user, "user config", names, project=False)
        cfg.files.append(str(user))
    found = find_project_table(Path.cwd() if cwd is None else cwd)
    if found is not None:
        path, table = found
        _table(cfg, table, path, PROJECT_TABLE, names, project=True)
        cfg.files.append(str(path))
        cfg.project_file = str(path)
    return cfg


# ----------------------------------------------------------------- with the magics


class ConfigState:
    """The configuration a SessionMagics instance uses, read again when the files change."""

    def __init__(self) -> None:
        self.config = FileConfig()
        self.error: ConfigError | None = None
        self.signature: tuple[Any, ...] | None = None
        self.applied: set[str] = set()  # settings that came from a file

    def refresh(self, magics: SessionMagics) -> None:
        """Read the files if they changed since last time, and apply their settings."""
        sig = signature()
        if sig == self.signature:
            return
        self.signature = sig
        try:
            cfg = read(settings=magics.trait_names(config=True))
        except ConfigError as exc:
            self.error = exc
            self.config = FileConfig()
            return
        self.error = None
        self.config = cfg
        self._apply(magics)

    def _apply(self, magics: SessionMagics) -> None:
        """Set the traits the files set and ``%config`` / ipython_config.py did not (their
        ``magics.config`` is merged over the files'); a setting gone from the files goes
        back to its default."""
        from traitlets import TraitError

        explicit = magics.config.get(SECTION, {})
        wanted = self.config.over(magics.config).get(SECTION, {})
        from_files = [name for name in wanted if name not in explicit]
        for name in self.applied - set(wanted):  # removed from the files, and no %config
            setattr(magics, name, magics.trait_defaults(name))
        self.applied = set()
        for name in from_files:
            try:
                setattr(magics, name, wanted[name])
            except TraitError as exc:
                message = str(exc)
                start = message.find("expected")
                reason = message[start:].rstrip(".") if start >= 0 else message
                self.error = ConfigError(f"{self.config.source('setting', name)}: {name}: {reason}")
                continue
            self.applied.add(name)

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def state(magics: SessionMagics) -> ConfigState:
    found = getattr(magics, "file_config", None)
    if not isinstance(found, ConfigState):
        found = ConfigState()
        magics.file_config = found
    return found


def attach(magics: SessionMagics) -> None:
    """Read the files when the extension loads; a problem is reported, not raised."""
    current = state(magics)
    current.refresh(magics)
    if current.error is not None:
        print(f"session-magics: configuration not used: {current.error}", file=sys.stderr)


def profiles(magics: SessionMagics) -> dict[str, dict[str, Any]]:
    return state(magics).config.profiles


def completed(
    magics: SessionMagics, name: str | None, line: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options of a ``%login`` line (by profile key) completed from the configured
    profile ``name``, and who named each credential endpoint: the line, the user file or
    the project file (see trust.py).

    Options given on the line win; a profile that already has a session in this kernel
    is left alone unless a URL is given.
    """
    current = state(magics)
    current.refresh(magics)
    current.check()
    cfg = current.config
    options = dict(line)
    set_by: dict[str, Any] = {}
    if name in cfg.profiles and (line.get("base_url") or name not in magics.sessions):
        named_in = _set_by(cfg, cfg.source("profile", name))
        for key, value in cfg.profiles[name].items():
            if key not in options:
                options[key] = value
                if key in ENDPOINT_KEYS:
                    set_by[key] = named_in
    elif not name and not line.get("base_url") and magics.default_profile is None and cfg.profiles:
        raise ProfileError(
            f"give the API's base URL (%login https://api.example.com) or a configured profile "
            f"(%login --profile NAME; configured: {', '.join(sorted(cfg.profiles))})"
        )
    if "login" not in options and "login_path" in current.applied:
        set_by["login"] = _set_by(cfg, cfg.source("setting", "login_path"))  # the default endpoint
    return options, set_by


def _set_by(cfg: FileConfig, file: str | None) -> Any:
    from .trust import SetBy

    if file is None:
        return SetBy("line")
    return SetBy("project" if file == cfg.project_file else "user", file)


def configured_session(magics: SessionMagics, name: str) -> ApiSession | None:
    """A session for the configured profile ``name`` (None when there is no such profile)."""
    if name not in profiles(magics):
        return None
    options, set_by = completed(magics, name, {})
    return magics.session_for(magics.profile_from(name, options, set_by))


def add_configured_sessions(magics: SessionMagics) -> None:
    """Give every configured profile a session, so ``%login --status`` lists them all."""
    current = state(magics)
    current.refresh(magics)
    current.check()
    for name in current.config.profiles:
        if name not in magics.sessions:
            configured_session(magics, name)


def source_note(magics: SessionMagics, name: str) -> str:
    where = state(magics).config.source("profile", name)
    return f" — configured in {where}" if where else ""
