"""Where each secret may go: the trust model, written down once and enforced here.

=========================  =================================  =======================================
secret                     may go to                          who may set that place
=========================  =================================  =======================================
access token               the API's origin (scheme, host,    whoever names the API: the %login line,
                           port) only                         the user's config file, a project file
password, client secret,   the profile's credential           on the API's own origin: anyone; on
refresh token, PKCE        endpoints (login, refresh,         another origin: the %login line or the
verifier, device code      revoke; an OAuth issuer's token,   user's config file; a project file
                           device and revocation endpoints)   naming one: after the user's approval
=========================  =================================  =======================================

Rules for every credential endpoint, whoever set it: an absolute http(s) URL whose host
and port read one way; plain ``http`` only to this machine (loopback) or with
``--allow-http`` — the same rule as for the API.

The access-token rule lives in :meth:`session_magics.profile.Profile.owns`; the
credential rule lives in :func:`check`, and every credential request (login, refresh,
revoke at ``%logout``; the OAuth flows' token, device and revocation requests) asks
:meth:`Trust.require` before it is sent — also for a token stored on an earlier day,
since the check looks at the endpoint at the time of sending, not at the time of the
login.

Approvals are kept in the user's config file (``~/.config/session-magics/config.toml``),
per project folder and origin::

    [approved_credential_origins]
    "/home/me/src/analysis" = ["https://login.example.com"]

A project file cannot approve anything (the table is refused there), and the user file is
written only after a person said yes (the login form's checkbox, a y/N prompt in a
terminal), or by the person editing it.

OAuth (:mod:`session_magics.oauth`): an OAuth session's credential endpoints are the
issuer (checked before its discovery documents are fetched), its token, device and
revocation endpoints, and the sign-in page of the code flow; each request names its
role and goes through ``ApiSession._send_credentials``. Endpoints from discovery carry
the issuer's :class:`SetBy` and are judged by their own origin, so a project's issuer
cannot lead credentials to an origin the user did not approve. A form or panel lists
``trust.pending(endpoints)`` and records a yes with ``trust.approve(exc)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ApprovalNeeded, CredentialEndpointRefused, SessionMagicsError

if TYPE_CHECKING:
    from .session import ApiSession

__all__ = [
    "ApprovalNeeded",
    "Approvals",
    "CredentialEndpointRefused",
    "Endpoint",
    "SetBy",
    "Trust",
    "approval_line",
    "check",
]

APPROVALS_TABLE = "approved_credential_origins"


@dataclass(frozen=True)
class SetBy:
    """Who named an endpoint: ``line`` (the ``%login`` line, ``%config`` or Python code),
    ``user`` (the user's config file), ``project`` (a pyproject.toml) or ``default``."""

    kind: str = "line"
    file: str | None = None

    @property
    def project_dir(self) -> str | None:
        """The project folder (the one holding the pyproject.toml) for a project setting."""
        if self.kind != "project" or not self.file:
            return None
        return str(Path(self.file).resolve().parent)

    def describe(self) -> str:
        if self.kind == "project" and self.file:
            return shown_path(self.file)
        if self.kind == "user":
            return f"your config file {self.file}" if self.file else "your config file"
        if self.kind == "default":
            return "the default"
        return "the %login line"


LINE = SetBy("line")


def shown_path(path: str) -> str:
    """``./pyproject.toml`` for a file under the working directory, else the absolute path."""
    try:
        rel = Path(path).resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return str(path)
    return f"./{rel.as_posix()}"


@dataclass(frozen=True)
class Endpoint:
    """One place a credential may be posted: ``role`` (login, refresh, revoke, token,
    device...), the absolute ``url``, and who named it."""

    role: str
    url: str
    set_by: SetBy = LINE


def approval_needed(endpoint: Endpoint, origin: str, api_origin: str, config_file: Path) -> ApprovalNeeded:
    project_dir = endpoint.set_by.project_dir or ""
    where = endpoint.set_by.describe()
    return ApprovalNeeded(
        f"not sent: {where} puts the {endpoint.role} endpoint on {origin}, not the API's "
        f"{api_origin}; approve that once: run %login where you can answer (without "
        f"--password-env), or add under [{APPROVALS_TABLE}] in {config_file}: "
        f"{approval_line(project_dir, origin)}",
        endpoint=endpoint,
        origin=origin,
        project_dir=project_dir,
    )


def approval_line(project_dir: str, origin: str) -> str:
    """The TOML line that approves ``origin`` for ``project_dir`` in the user's config file,
    under ``[approved_credential_origins]``."""
    import json

    return f"{json.dumps(project_dir, ensure_ascii=False)} = [{json.dumps(origin)}]"


def check(
    endpoint: Endpoint,
    *,
    api_origin: tuple[str, str, int],
    allow_http: bool,
    approved: Callable[[str, str], bool],
    config_file: Path,
) -> None:
    """Raise unless ``endpoint`` may receive credentials of the API at ``api_origin``.

    :class:`CredentialEndpointRefused`: never acceptable as it is (plain http to another
    machine without ``allow_http``, a URL whose host cannot be read one way).
    :class:`ApprovalNeeded`: a project file's endpoint on a foreign origin, not approved.
    """
    from .profile import format_origin, is_loopback, origin_of, url_problem

    origin = origin_of(endpoint.url)
    problem = url_problem(endpoint.url)
    if origin is None or problem:
        raise CredentialEndpointRefused(
            f"the {endpoint.role} endpoint is not a usable http(s) URL"
            + (f": {problem}" if problem else " (check the host name and port)")
        )
    if origin[0] == "http" and not allow_http and not is_loopback(origin[1]):
        raise CredentialEndpointRefused(
            f"the {endpoint.role} endpoint {format_origin(origin)} uses plain http: credentials "
            "would cross the network unencrypted. Use https, or pass --allow-http if you accept that risk."
        )
    if origin == api_origin or endpoint.set_by.kind != "project":
        return
    text = format_origin(origin)
    project_dir = endpoint.set_by.project_dir or ""
    if project_dir and approved(project_dir, text):
        return
    raise approval_needed(endpoint, text, format_origin(api_origin), config_file)


# ---------------------------------------------------------------- approvals
class Approvals:
    """The approvals in the user's config file (read at each question: credential requests
    are rare, and another kernel may have approved meanwhile)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        if self._path is not None:
            return self._path
        from .config import user_config_file

        return user_config_file()

    def table(self) -> dict[str, list[str]]:
        try:
            raw = self.path.read_bytes()
        except OSError:
            return {}
        import tomllib

        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return {}
        return parse_table(data.get(APPROVALS_TABLE))

    def is_approved(self, project_dir: str, origin: str) -> bool:
        return origin in self.table().get(project_dir, [])

    def approve(self, project_dir: str, origin: str) -> None:
        """Add ``origin`` for ``project_dir`` to the user's config file (comments and
        layout kept; written to a temporary file, then renamed)."""
        import tomlkit

        path = self.path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        doc = tomlkit.parse(text)
        table = doc.get(APPROVALS_TABLE)
        if table is None:
            table = tomlkit.table()
            doc[APPROVALS_TABLE] = table
        origins = table.get(project_dir)
        if origins is None:
            table[project_dir] = [origin]
        elif origin not in origins:
            origins.append(origin)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(tomlkit.dumps(doc))
        os.replace(tmp, path)


def parse_table(value: Any) -> dict[str, list[str]]:
    """``{project folder: [origins]}`` from the TOML table (anything malformed is ignored)."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, list[str]] = {}
    for key, origins in value.items():
        if isinstance(origins, str):
            origins = [origins]
        if isinstance(origins, list):
            out[str(key)] = [o.rstrip("/") for o in origins if isinstance(o, str)]
    return out


class Trust:
    """The credential rule for one API: ask :meth:`require` before sending a secret."""

    def __init__(self, api_origin: tuple[str, str, int], allow_http: bool, approvals: Approvals) -> None:
        self.api_origin = api_origin
        self.allow_http = allow_http
        self.approvals = approvals

    def require(self, endpoint: Endpoint) -> str:
        """The endpoint's URL, if credentials may go there; else an error (nothing is sent)."""
        check(
            endpoint,
            api_origin=self.api_origin,
            allow_http=self.allow_http,
            approved=self.approvals.is_approved,
            config_file=self.approvals.path,
        )
        return endpoint.url

    def pending(self, endpoints: Iterable[Endpoint]) -> list[ApprovalNeeded]:
        """What a person would have to approve before these endpoints are used (one per
        origin). Endpoints refused outright raise :class:`CredentialEndpointRefused`."""
        found: dict[str, ApprovalNeeded] = {}
        for endpoint in endpoints:
            try:
                self.require(endpoint)
            except ApprovalNeeded as exc:
                found.setdefault(exc.origin, exc)
        return list(found.values())

    def approve(self, needed: ApprovalNeeded) -> None:
        self.approvals.approve(needed.project_dir, needed.origin)


def foreign_endpoints(
    endpoints: Iterable[Endpoint], api_origin: tuple[str, str, int] | None
) -> Iterator[tuple[str, tuple[str, str, int], Endpoint]]:
    """Each endpoint that posts credentials to an origin other than the API's, with that
    origin as shown (``https://login.example.com``) and as compared."""
    from .profile import format_origin, origin_of

    for endpoint in endpoints:
        origin = origin_of(endpoint.url)
        if origin is not None and origin != api_origin:
            yield format_origin(origin), origin, endpoint


def foreign_origins(endpoints: Iterable[Endpoint], api_origin: tuple[str, str, int]) -> list[str]:
    """The origins other than the API's that these endpoints post credentials to."""
    return list(dict.fromkeys(text for text, _, _ in foreign_endpoints(endpoints, api_origin)))


def credentials_note(session: ApiSession) -> str:
    """`` — credentials go to ORIGIN`` when the profile posts credentials to another origin
    than the API's (an identity provider, say), with who set it and whether it is approved."""
    try:
        endpoints = session.credential_endpoints()
        pending = {p.origin for p in session.pending_approvals()}
    except SessionMagicsError:
        return ""
    # An OAuth issuer is named by its own note ("via ISSUER"): its origin is repeated here
    # only to say who set it or that it awaits approval.
    named = getattr(session, "issuer_origin", None)
    shown: dict[str, str] = {}
    for text, origin, endpoint in foreign_endpoints(endpoints, session.profile.origin):
        if text in shown:
            continue
        note = text
        if endpoint.set_by.kind in ("project", "user"):
            note += f" (set by {endpoint.set_by.describe()})"
        if text in pending:
            note += ", not approved yet"
        if origin == named and note == text:
            continue
        shown[text] = note
    return f" — credentials go to {', '.join(shown.values())}" if shown else ""
