"""Settings of the demo API (no third-party imports, so it is cheap to import)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: Status codes the demo may answer for a missing, expired or invalid access token.
EXPIRED_STATUSES = (401, 403)


@dataclass(frozen=True)
class DemoConfig:
    """How the demo API behaves.

    ``access_ttl`` and ``refresh_ttl`` are in seconds and may be fractional; the
    ``exp`` claim of an access token is rounded *up* to a whole second, so a token
    is always valid for at least ``access_ttl`` seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    access_ttl: float = 300.0
    refresh_ttl: float = 3600.0
    username: str = "demo"
    password: str = dataclasses.field(default="penguins", repr=False)
    expired_status: int = 401
    log_level: str = "info"
    realm: str = "demo"
    #: Added to every answer (except ``/_…`` and ``/healthz``), like a real API's round trip.
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.expired_status not in EXPIRED_STATUSES:
            raise ValueError(f"expired_status must be one of {EXPIRED_STATUSES}")
        if self.access_ttl <= 0 or self.refresh_ttl <= 0:
            raise ValueError("access_ttl and refresh_ttl must be positive")
        if not 0 <= self.latency_ms <= 60_000:
            raise ValueError("latency_ms must be between 0 and 60000")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")

    def replace(self, **changes: object) -> DemoConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
