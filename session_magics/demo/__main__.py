"""``python -m session_magics.demo``: run the demo token API in the foreground.

The first line printed is always ``session-magics demo API: http://HOST:PORT``
(with the real port when ``--port 0`` asks for a free one), so scripts can read
the URL from it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from .config import EXPIRED_STATUSES, DemoConfig

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


N = TypeVar("N", int, float)


def _number(
    convert: Callable[[str], N], noun: str, fits: Callable[[N], bool], rule: str
) -> Callable[[str], N]:
    """An argparse ``type``: ``convert`` the text, refusing what is not ``noun`` or not
    within ``rule``."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not fits(value):
            raise argparse.ArgumentTypeError(rule)
        return value

    return parse


_positive = _number(float, "a number", lambda v: v > 0, "must be greater than 0")
_port = _number(int, "a port number", lambda v: 0 <= v <= 65535, "must be between 0 and 65535")
_latency = _number(float, "a number", lambda v: 0 <= v <= 60_000, "must be between 0 and 60000")


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m session_magics.demo",
        description="A small token-protected HTTP API (Palmer penguins and friends) "
        "for trying session-magics.",
    )
    parser.add_argument("--host", default=d.host, help="interface to listen on (%(default)s)")
    parser.add_argument("--port", type=_port, default=d.port, help="port (%(default)s); 0 picks a free one")
    parser.add_argument(
        "--access-ttl",
        type=_positive,
        default=d.access_ttl,
        metavar="SECONDS",
        help="lifetime of access tokens (%(default)s)",
    )
    parser.add_argument(
        "--refresh-ttl",
        type=_positive,
        default=d.refresh_ttl,
        metavar="SECONDS",
        help="lifetime of refresh tokens (%(default)s)",
    )
    parser.add_argument("--user", default=d.username, help="demo user name (%(default)s)")
    parser.add_argument("--password", default=d.password, help="demo password (%(default)s)")
    parser.add_argument(
        "--expired-status",
        type=int,
        choices=EXPIRED_STATUSES,
        default=d.expired_status,
        help="status for a missing, expired or invalid access token (%(default)s)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_latency,
        default=d.latency_ms,
        metavar="MS",
        help="wait this many milliseconds before every answer, like a distant API (%(default)g)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=d.log_level,
        help="uvicorn log level (%(default)s); the access log shows paths, never tokens",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print the first line only (the URL) and log warnings and errors only "
        "(no access log); make demo runs it so",
    )
    return parser


def _seconds(value: float) -> str:
    return f"{value:g} s"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = DemoConfig(
        host=args.host,
        port=args.port,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        username=args.user,
        password=args.password,
        expired_status=args.expired_status,
        log_level=args.log_level,
        latency_ms=args.latency_ms,
    )

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from .app import create_app
    from .server import bind_socket, socket_url, uvicorn_config

    try:
        sock = bind_socket(config.host, config.port)
    except OSError as exc:
        print(f"cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return 1
    url = socket_url(sock)
    app = create_app(config.replace(port=sock.getsockname()[1]))
    if args.quiet:
        print(f"session-magics demo API: {url}", flush=True)
    else:
        print(
            f"session-magics demo API: {url}\n"
            f"  username: {config.username}\n"
            f"  password: {config.password}\n"
            f"  token endpoint: {url}/auth/token  (OAuth 2 password and refresh_token grants)\n"
            f"  also: {url}/auth/jwt (simplejwt style), {url}/auth/apikey (API key)\n"
            f"  access tokens last {_seconds(config.access_ttl)}, refresh tokens "
            f"{_seconds(config.refresh_ttl)}; a bad token gets {config.expired_status}\n"
            + (f"  every answer waits {config.latency_ms:g} ms\n" if config.latency_ms else "")
            + f"  try: {url}/penguins  (all endpoints: {url}/)\n"
            "  stop with Ctrl+C",
            flush=True,
        )
    level = "warning" if args.quiet else config.log_level
    server = uvicorn.Server(
        uvicorn_config(app, log_level=level, access_log=not args.quiet, log_config=LOGGING_CONFIG)
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
