"""Who could answer a login form here: :func:`frontend`.

A guess from hints, not a proof (see :func:`frontend`); ``SESSION_MAGICS_FRONTEND``
overrides it. Uses the kernel's public API only (``get_parent``).
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from ..errors import NoFrontendError
from .base import current_parent, running_kernel

Frontend = Literal["widgets", "terminal", "none"]

#: Environment variable that overrides :func:`frontend` (``widgets``, ``terminal``
#: or ``none``), for frontends the hints below do not recognise.
FRONTEND_ENV = "SESSION_MAGICS_FRONTEND"


def frontend() -> Frontend:
    """Who could answer a login form here.

    * ``"widgets"``: running in an ipykernel kernel with a widget frontend
      plausibly attached. This is a hint, not a proof: JupyterLab and Notebook
      send ``metadata.cellId`` with each execute_request and jupyter_server sets
      ``JPY_SESSION_NAME`` in the kernels it starts; plain nbclient/papermill do
      neither. A papermill run started from inside a notebook's kernel inherits
      that kernel's ``JPY_SESSION_NAME``; where the launching process's
      environment can be read (Linux ``/proc``), such an inherited name is not
      taken as a frontend.
    * ``"terminal"``: terminal IPython or plain Python with a terminal on stdin.
    * ``"none"``: nobody can answer (nbclient, papermill, scheduled runs...).

    ``SESSION_MAGICS_FRONTEND=widgets|terminal|none`` overrides the guess.
    """
    forced = os.environ.get(FRONTEND_ENV, "").strip().lower()
    if forced in ("widgets", "terminal", "none"):
        return forced  # type: ignore[return-value]
    kernel = running_kernel(any_thread=True)
    if kernel is not None:
        metadata = current_parent(kernel).get("metadata") or {}
        if isinstance(metadata, dict) and metadata.get("cellId"):
            return "widgets"
        if os.environ.get("JPY_SESSION_NAME") and not _session_name_inherited():
            return "widgets"
        return "none"
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        interactive = False
    return "terminal" if interactive else "none"


def _session_name_inherited() -> bool:
    """Whether this kernel's ``JPY_SESSION_NAME`` was inherited rather than set for it.

    jupyter_server adds the variable to the environment of the kernels it starts
    only; its own environment lacks it. jupyter_client puts the launching
    process's pid in ``JPY_PARENT_PID``. So when the launcher's environment holds
    ``JPY_SESSION_NAME`` too, the launcher is itself a kernel's child (papermill
    or nbclient run from a notebook) and no frontend comes with the name. Only
    the presence of the name is checked; nothing else is kept. Unknown (not
    Linux, no permission, no such process) counts as not inherited.
    """
    parent = os.environ.get("JPY_PARENT_PID", "")
    if not parent.isdigit() or int(parent) == os.getpid():
        return False
    try:
        with open(f"/proc/{int(parent)}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return False
    return environ.startswith(b"JPY_SESSION_NAME=") or b"\0JPY_SESSION_NAME=" in environ


def no_frontend() -> NoFrontendError:
    return NoFrontendError(
        "Nobody can answer a login form here: no widget frontend is attached to this "
        "kernel (e.g. nbclient, papermill or a scheduled run) and there is no terminal. "
        "Provide the credentials another way, or set SESSION_MAGICS_FRONTEND=widgets "
        "if this frontend does show widgets."
    )
