"""Requests kept in ``.http`` files (VS Code REST Client, JetBrains HTTP client).

``%api --file requests.http NAME`` runs the request named ``NAME`` in the file::

    @host = http://127.0.0.1:8765

    ### list penguins
    GET {{host}}/penguins?species={{species}}
    Accept: application/json

    ###
    # @name me
    GET {{host}}/me

* Requests are separated by lines starting with ``###``; a request is named by
  ``# @name NAME`` (or ``// @name NAME``), else by the text after its ``###``.
* File variables: ``@name = value`` lines before a request line; values may use
  other variables.
* ``{{name}}`` is a file variable, else a variable of the environment chosen with
  ``--env NAME``, else a Python expression in the notebook's namespace (as in any
  cell). System variables: ``{{$processEnv VAR}}`` (also ``{{$env.VAR}}``),
  ``{{$dotenv VAR}}`` (a ``.env`` file next to the ``.http`` file), ``{{$uuid}}``
  (also ``{{$random.uuid}}``), ``{{$timestamp}}``, ``{{$isoTimestamp}}``,
  ``{{$randomInt MIN MAX}}`` (MAX excluded).
* Environments: ``http-client.env.json`` next to the file (JetBrains:
  ``{"dev": {"host": ...}}``), and REST Client's ``"rest-client.environmentVariables"``
  in the nearest ``.vscode/settings.json`` above it (``$shared`` applies to every
  environment). ``http-client.private.env.json`` is read when it exists: its values
  are hidden in every display, and a note says once that a token is better kept in
  the keyring (``%login --token``).
* JetBrains response handlers (``> {% ... %}``, ``> file.js``) are left out; a
  request variable of another request's answer (``{{login.response.body.token}}``)
  is not supported: ``%login`` keeps the token.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SessionMagicsError

_VARIABLE_LINE = re.compile(r"^@([A-Za-z_][\w.-]*)\s*=\s?(.*)$")
_NAME_LINE = re.compile(r"^(?:#|//)\s*@name(?:\s+|\s*=\s*)(\S.*?)\s*$")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_HANDLER = re.compile(r"^(?:>\s*\{%|>\s*\S+\.js\s*$|>>!?\s)")
ENV_FILE = "http-client.env.json"
PRIVATE_ENV_FILE = "http-client.private.env.json"
SETTINGS_KEY = "rest-client.environmentVariables"
_NOTED: set[str] = set()  # private env files already pointed out in this process


class HttpFileError(SessionMagicsError):
    """A problem with an ``.http`` file, its variables or its environments."""


@dataclass
class FileRequest:
    name: str | None
    first_line: int  # the file line of the block's first line
    lines: list[str]


@dataclass
class HttpFile:
    path: Path
    variables: dict[str, str] = field(default_factory=dict)
    requests: list[FileRequest] = field(default_factory=list)

    def names(self) -> list[str]:
        return [r.name for r in self.requests if r.name]

    def find(self, name: str | None) -> FileRequest:
        if name is None:
            if len(self.requests) == 1:
                return self.requests[0]
            raise HttpFileError(
                f"{self.path.name} holds {len(self.requests)} requests: name one "
                f"({', '.join(self.names()) or 'none is named: add # @name NAME'})"
            )
        for request in self.requests:
            if request.name == name:
                return request
        raise HttpFileError(
            f"no request named {name!r} in {self.path.name} (named: {', '.join(self.names()) or 'none'})"
        )


def parse_http_file(text: str, path: Path) -> HttpFile:
    """Split an ``.http`` file into its named requests and file variables."""
    result = HttpFile(path)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    block: FileRequest | None = None
    started = False  # whether the block's request line was seen
    in_handler = False

    def finish() -> None:
        if block is not None and any(
            line.strip() and not line.lstrip().startswith(("#", "//")) for line in block.lines
        ):
            result.requests.append(block)

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if in_handler:
            in_handler = "%}" not in stripped
            if block is not None:
                block.lines.append("")
            continue
        if stripped.startswith("###"):
            finish()
            block = FileRequest(stripped[3:].strip() or None, number + 1, [])
            started = False
            continue
        if block is None:
            block = FileRequest(None, number, [])
        if started and _HANDLER.match(stripped):  # a JetBrains response handler or redirect
            in_handler = stripped.startswith("> {%") and "%}" not in stripped
            block.lines.append("")
            continue
        if not started:
            variable = _VARIABLE_LINE.match(stripped)
            if variable:
                result.variables[variable.group(1)] = variable.group(2).strip()
                block.lines.append("")
                continue
            named = _NAME_LINE.match(stripped)
            if named:
                block.name = named.group(1)
                block.lines.append("")
                continue
            if stripped and not stripped.startswith(("#", "//")):
                started = True
        block.lines.append(line)
    finish()
    return result


# -- environments -----------------------------------------------------------------------------


def _strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas (VS Code's settings.json) as plain JSON."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        else:
            out.append(ch)
        i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def _read_json(path: Path, *, comments: bool = False) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(_strip_jsonc(text) if comments else text)
    except OSError as exc:
        raise HttpFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise HttpFileError(f"{path} is not valid JSON: {exc}") from None


def _settings_file(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / ".vscode" / "settings.json"
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Environment:
    values: dict[str, str]
    secrets: tuple[str, ...]  # values from the private file
    private_file: Path | None


def _strings(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise HttpFileError(f"{where} must be a JSON object of variables")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in table.items()}


def load_environment(folder: Path, env: str | None) -> Environment:
    """The variables of environment ``env`` (None: only REST Client's ``$shared``)."""
    values: dict[str, str] = {}
    secrets: list[str] = []
    known: set[str] = set()
    settings = _settings_file(folder)
    if settings is not None:
        table = _read_json(settings, comments=True)
        envs = table.get(SETTINGS_KEY) if isinstance(table, dict) else None
        if isinstance(envs, dict):
            known.update(k for k in envs if k != "$shared")
            values.update(_strings(envs.get("$shared", {}), f"{settings}: $shared"))
            if env is not None and env in envs:
                values.update(_strings(envs[env], f"{settings}: {env}"))
    private_file: Path | None = None
    for name, private in ((ENV_FILE, False), (PRIVATE_ENV_FILE, True)):
        path = folder / name
        if not path.is_file():
            continue
        table = _read_json(path)
        if not isinstance(table, dict):
            raise HttpFileError(f"{path} must be a JSON object of environments")
        if private:
            private_file = path
        known.update(table)
        if env is not None and env in table:
            chosen = _strings(table[env], f"{path}: {env}")
            values.update(chosen)
            if private:
                secrets.extend(v for v in chosen.values() if v)
    if env is not None and env not in known:
        listed = ", ".join(sorted(known)) or "none: no http-client.env.json or REST Client settings found"
        raise HttpFileError(f"no environment {env!r} (environments: {listed})")
    return Environment(values, tuple(secrets), private_file)


def _dotenv(folder: Path, name: str) -> str:
    path = folder / ".env"
    if not path.is_file():
        raise HttpFileError(f"{{{{$dotenv {name}}}}}: no .env file in {folder}")
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return value
    raise HttpFileError(f"{{{{$dotenv {name}}}}}: {name} is not in {path}")


def _system(expr: str, folder: Path) -> str:
    parts = expr.split()
    head = parts[0]
    if head in ("$uuid", "$random.uuid", "$guid"):
        return str(uuid.uuid4())
    if head == "$timestamp":
        return str(int(time.time()))
    if head == "$isoTimestamp":
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    if head == "$randomInt":
        try:
            low, high = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise HttpFileError("{{$randomInt MIN MAX}} needs two whole numbers") from None
        if high <= low:
            raise HttpFileError("{{$randomInt MIN MAX}}: MAX must be greater than MIN")
        return str(random.randrange(low, high))
    if head == "$processEnv" or head.startswith("$env."):
        name = parts[1] if head == "$processEnv" and len(parts) > 1 else head[5:]
        if not name:
            raise HttpFileError("{{$processEnv NAME}} needs a variable name")
        value = os.environ.get(name)
        if value is None:
            raise HttpFileError(f"{{{{{expr}}}}}: the environment variable {name} is not set")
        return value
    if head == "$dotenv":
        if len(parts) < 2:
            raise HttpFileError("{{$dotenv NAME}} needs a variable name")
        return _dotenv(folder, parts[1])
    raise HttpFileError(
        f"{{{{{expr}}}}} is not a system variable this file format has (or that is supported)"
    )


def substitute(text: str, variables: dict[str, str], folder: Path, *, depth: int = 0) -> str:
    """Replace the ``.http`` variables in ``text``; ``{{...}}`` that names none of them is
    left for the cell's own ``{{expr}}`` (a Python expression)."""
    if depth > 10:
        raise HttpFileError("the file variables refer to each other in a loop")

    def one(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("$"):
            return _system(expr, folder)
        if expr in variables:
            return substitute(variables[expr], variables, folder, depth=depth + 1)
        first = expr.split(".", 1)[0]
        if ".response." in expr or ".request." in expr:
            raise HttpFileError(
                f"{{{{{expr}}}}}: values from another request's answer are not supported "
                f"({first!r}): %login keeps the token, and {{{{expr}}}} can use Python values"
            )
        return match.group(0)

    return _PLACEHOLDER.sub(one, text)


@dataclass
class LoadedRequest:
    text: str  # the request in the cell layout, variables replaced
    first_line: int
    secrets: tuple[str, ...]
    note: str | None  # said once: plaintext secrets


def load_request(path: str, name: str | None, env: str | None) -> LoadedRequest:
    """The request ``name`` of the ``.http`` file at ``path``, with the file's and the
    environment's variables replaced."""
    file_path = Path(os.path.expanduser(path)).resolve()
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HttpFileError(f"--file {path}: {exc.strerror or exc}") from None
    parsed = parse_http_file(text, file_path)
    request = parsed.find(name)
    environment = load_environment(file_path.parent, env)
    variables = {**environment.values, **parsed.variables}  # file variables win, as in REST Client
    body = substitute("\n".join(request.lines), variables, file_path.parent)
    note = None
    private = environment.private_file
    if private is not None and str(private) not in _NOTED:
        _NOTED.add(str(private))
        note = (
            f"Note: {private.name} keeps secrets in a plain file; its values are hidden in what is "
            "shown here. A token is better kept in the OS keyring: %login URL --token"
        )
    return LoadedRequest(body, request.first_line, environment.secrets, note)


def apply_headers(spec: Any, cell: str, evaluate: Any) -> None:
    """``%%api --file FILE NAME`` with header lines in the cell: each one replaces the
    request's header of that name, or is added."""
    from .request import interpolate

    for number, raw in enumerate(cell.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or not re.match(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$", key):
            raise HttpFileError(
                f"line {number}: with --file the cell holds headers only ('Name: value'), got {line!r}"
            )
        spec.headers = [(k, v) for k, v in spec.headers if k.lower() != key.lower()]
        spec.headers.append((key, interpolate(value.strip(), evaluate)))


def say(note: str | None) -> None:
    if note:
        print(note, file=sys.stderr)
