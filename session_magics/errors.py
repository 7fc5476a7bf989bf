"""Exceptions raised by session-magics.

Every message here is written for the person at the notebook: it says what went
wrong and what to do next, and it never contains a password or a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trust import Endpoint


class SessionMagicsError(Exception):
    """Base class of every error session-magics raises on purpose.

    The magics show these as a short message rather than a traceback.
    """


class SessionExpired(SessionMagicsError):
    """The session could not be renewed: the user has to log in again."""


class LoginError(SessionMagicsError):
    """Logging in failed (wrong credentials, an unexpected answer from the server...)."""


class KeyringError(SessionMagicsError):
    """The OS keyring could not be used safely (no backend, locked, hanging...)."""


class RequestSyntaxError(SessionMagicsError):
    """A ``%%api`` cell could not be parsed. ``lineno`` is 1-based within the cell."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        self.lineno = lineno
        self.reason = message
        where = f"line {lineno}: " if lineno is not None else ""
        super().__init__(f"{where}{message}")


class ProfileError(SessionMagicsError):
    """An unknown profile, or options that do not make a usable profile."""


class CredentialEndpointRefused(ProfileError):
    """A credential endpoint no approval can make acceptable (plain http elsewhere, a bad URL)."""


class ApprovalNeeded(SessionMagicsError):
    """A project file names a credential endpoint on another origin the user has not approved.

    Nothing was sent. ``origin``, ``project_dir`` and ``endpoint`` (a
    :class:`session_magics.trust.Endpoint`) say what to approve; see session_magics.trust.
    """

    def __init__(
        self, message: str, *, endpoint: Endpoint | None = None, origin: str = "", project_dir: str = ""
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.origin = origin
        self.project_dir = project_dir


class NoFrontendError(SessionExpired):
    """Credentials are needed but nobody can be asked (no widgets, no terminal, no env var).

    A kind of :class:`SessionExpired`, so scheduled runs can catch one exception.
    """


class RequestFailed(SessionMagicsError):
    """The request never got an answer (connection refused, DNS failure, timeout...)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl+C (the notebook's stop button) while a request, a login or a keyring call ran.

    Still a :class:`KeyboardInterrupt`, so loops stop as they should. The magics show it
    as one line: a traceback of the frames it came through would show their local
    variables in IPython's ``Verbose`` mode, and those hold the request's headers.
    """


class OneLine:
    """What IPython shows instead of an error's traceback (its ``_render_traceback_``):
    ``NAME: message``, the name in red as in IPython's own tracebacks."""

    __slots__ = ("text",)

    def __init__(self, name: str, message: str) -> None:
        self.text = f"\x1b[0;31m{name}\x1b[0m: {message}"

    def __call__(self) -> list[str]:
        return [self.text]


def interrupted_wait(message: str) -> KeyboardInterrupt:
    """The kernel was interrupted while a login form or panel waited in the running cell.

    A plain :class:`KeyboardInterrupt` (the error every interrupted cell ends with, and
    what ``except KeyboardInterrupt`` catches), shown by IPython as the one line
    ``KeyboardInterrupt: message`` instead of a traceback through the waiting
    machinery (on an awaiting cell ipykernel would show asyncio's ``CancelledError``).
    """
    exc = KeyboardInterrupt(message)
    exc._render_traceback_ = OneLine("KeyboardInterrupt", message)  # type: ignore[attr-defined]
    return exc


def shown_as_one_line(exc: BaseException) -> bool:
    """Whether IPython shows ``exc`` as one line (it has a ``_render_traceback_``)."""
    return hasattr(exc, "_render_traceback_")
