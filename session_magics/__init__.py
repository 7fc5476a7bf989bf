"""session-magics: explore token-protected HTTP APIs from IPython and Jupyter.

``%load_ext session_magics`` registers ``%login``, ``%logout`` and ``%%api``.
Importing this package is cheap: requests, keyring, ipywidgets and pandas are
imported only when a magic first needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    ApprovalNeeded,
    CredentialEndpointRefused,
    Interrupted,
    KeyringError,
    LoginCancelled,
    LoginError,
    NoFrontendError,
    ProfileError,
    RequestFailed,
    RequestSyntaxError,
    SessionExpired,
    SessionMagicsError,
)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

__all__ = [
    "ApprovalNeeded",
    "CredentialEndpointRefused",
    "Interrupted",
    "KeyringError",
    "LoginCancelled",
    "LoginError",
    "NoFrontendError",
    "ProfileError",
    "RequestFailed",
    "RequestSyntaxError",
    "SessionExpired",
    "SessionMagicsError",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics (called by ``%load_ext session_magics``)."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from .magics import unload

    unload(ipython)
