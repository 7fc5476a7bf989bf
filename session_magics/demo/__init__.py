"""A small token-protected HTTP API to try session-magics against.

Run it with ``python -m session_magics.demo`` (see ``--help``), or start it in a
background thread with :class:`DemoServer`. It needs the ``demo`` extra::

    pip install 'session-magics[demo]'

The core package never imports this one.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the demo API needs Starlette and uvicorn: pip install 'session-magics[demo]'") from exc

from .app import DemoState, Principal, create_app
from .config import DemoConfig
from .server import DemoServer, ThreadedServer, bind_socket

__all__ = [
    "DemoConfig",
    "DemoServer",
    "DemoState",
    "Principal",
    "ThreadedServer",
    "bind_socket",
    "create_app",
]
