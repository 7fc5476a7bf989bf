"""Tokens and the parsing of token responses.

A :class:`Token` never shows its secrets: its ``repr`` and ``str`` name the user,
the type and the expiry only. Secrets are reached through explicit attributes
(``access_token``, ``refresh_token``) by the code that sends them.

:func:`parse_token_response` understands the common shapes without configuration:

* RFC 6749 §5.1 — ``access_token``, ``token_type``, ``expires_in``, ``refresh_token``;
* JWT-pair APIs (djangorestframework-simplejwt and the like) — ``access``, ``refresh``;
* single-token APIs — ``token`` or ``key``.

The expiry comes from ``expires_in`` or else from the JWT ``exp`` claim, read
without verifying the signature (the server verifies it; we only need the time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import LoginError
from .result import dig

ACCESS_FIELDS = ("access_token", "access", "token", "key", "id_token")
REFRESH_FIELDS = ("refresh_token", "refresh")
# Token lifetimes and expiry times beyond this are not believed (a server answering
# ``expires_in: 1e308``, ``Infinity``, NaN or a JWT ``exp`` of 1e300): the expiry is
# then unknown, as if the server had not said.
MAX_LIFETIME = 100 * 365 * 86400.0


def plausible_lifetime(value: Any) -> float | None:
    """``value`` (an ``expires_in``) as seconds if it is a finite number no larger than
    :data:`MAX_LIFETIME` (negative: already expired), else None."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer with hundreds of digits
        return None
    if not math.isfinite(seconds) or abs(seconds) > MAX_LIFETIME:
        return None
    return seconds


def plausible_time(value: Any, now: float | None = None) -> float | None:
    """``value`` (seconds since the epoch: an expiry) if it is a finite number within
    :data:`MAX_LIFETIME` of now, else None (unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        when = float(value)
    except OverflowError:
        return None
    now = time.time() if now is None else now
    if not math.isfinite(when) or abs(when - now) > MAX_LIFETIME:
        return None
    return when


@dataclass(frozen=True)
class FieldNames:
    """Where to find things in a token response (``None`` means: guess from the common shapes).

    Dotted paths reach into nested objects: ``data.token``.
    """

    access: str | None = None
    refresh: str | None = None
    expires_in: str | None = None


@dataclass(frozen=True, repr=False)
class Token:
    access_token: str
    token_type: str = "Bearer"
    refresh_token: str | None = None
    expires_at: float | None = None  # seconds since the epoch; None: unknown / never
    user: str | None = None
    # The field name the server used for the refresh token: a refresh is posted the
    # way the login was (JSON under this name, or an OAuth2 form).
    refresh_field: str | None = None
    obtained_at: float = field(default_factory=time.time)
    # OAuth: the scopes granted and the issuer whose endpoints alone may see the refresh token.
    scope: str | None = None
    issuer: str | None = None

    def __repr__(self) -> str:
        parts = [f"type={self.token_type!r}"]
        if self.user:
            parts.append(f"user={self.user!r}")
        parts.append(self.describe_expiry())
        parts.append("refreshable" if self.refresh_token else "not refreshable")
        return f"<Token {' '.join(parts)}>"

    __str__ = __repr__

    def expires_in(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def is_expired(self, leeway: float = 0.0, now: float | None = None) -> bool:
        """Whether the token expires within ``leeway`` seconds — or within half its
        lifetime when that is shorter: a token that lives 5 s with a leeway of 30 s would
        otherwise be renewed before every request."""
        left = self.expires_in(now)
        if left is None:
            return False
        if self.expires_at is not None and self.obtained_at > 0:
            lifetime = self.expires_at - self.obtained_at
            if lifetime > 0:
                leeway = min(leeway, lifetime / 2)
        return left <= leeway

    def describe_expiry(self, now: float | None = None) -> str:
        """What follows "token" in a sentence: "expires in 4 min, at 2026-12-03 16:45:55",
        "expired at …", or "expiry unknown"."""
        left = self.expires_in(now)
        if left is None or self.expires_at is None:
            return "expiry unknown"
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.expires_at))
        except (OverflowError, ValueError, OSError):  # not a time this platform can show
            return "expiry unknown"
        if left <= 0:
            return f"expired at {when}"
        return f"expires in {_human(left)}, at {when}"

    def replace(self, **changes: Any) -> Token:
        return dataclasses.replace(self, **changes)

    # -- serialisation for the keyring (compact JSON; the keyring holds secrets, we don't)
    def to_json(self) -> str:
        data = {
            "a": self.access_token,
            "t": self.token_type,
            "r": self.refresh_token,
            "e": self.expires_at,
            "u": self.user,
            "f": self.refresh_field,
            "o": self.obtained_at,
            "s": self.scope,
            "i": self.issuer,
        }
        return json.dumps({k: v for k, v in data.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Token:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("a"), str):
            raise ValueError("not a session-magics token entry")
        return cls(
            access_token=data["a"],
            token_type=data.get("t", "Bearer"),
            refresh_token=data.get("r"),
            # An entry written with an absurd expiry (by an older version) reads as unknown.
            expires_at=plausible_time(data.get("e")),
            user=data.get("u"),
            refresh_field=data.get("f"),
            obtained_at=plausible_time(data.get("o")) or 0.0,
            scope=data.get("s") if isinstance(data.get("s"), str) else None,
            issuer=data.get("i") if isinstance(data.get("i"), str) else None,
        )


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it; None if it is not a JWT."""
    if token.count(".") != 2:
        return None
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return plausible_time(claims.get("exp"))


def _first(data: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return name, value
    return None, None


def _is_token_text(value: str) -> bool:
    """Whether ``value`` can travel in a header: printable, without spaces or line breaks."""
    return bool(value) and all(ch.isprintable() and not ch.isspace() for ch in value)


def parse_token_response(
    data: Any,
    *,
    fields: FieldNames | None = None,
    default_type: str = "Bearer",
    user: str | None = None,
    previous: Token | None = None,
    now: float | None = None,
) -> Token:
    """Build a :class:`Token` from a decoded token-endpoint answer.

    ``previous`` is the token being refreshed: when the server does not rotate the
    refresh token (simplejwt without rotation answers ``{"access": ...}`` only), the
    old refresh token is kept.
    """
    fields = fields or FieldNames()
    if not isinstance(data, Mapping):
        raise LoginError(
            "the token endpoint answered something that is not a JSON object; "
            "expected fields such as access_token, access, token or key"
        )
    access: Any
    if fields.access:
        access = dig(data, fields.access)
        if not isinstance(access, str) or not access:
            raise LoginError(f"the token response has no string field {fields.access!r}")
    else:
        _, access = _first(data, ACCESS_FIELDS)
        if access is None:
            present = ", ".join(sorted(map(str, data))) or "none"
            raise LoginError(
                "the token response holds no token: expected one of "
                f"{', '.join(ACCESS_FIELDS)} (fields present: {present}); "
                "use --access-field to name it"
            )
    if fields.refresh:
        refresh_name: str | None = fields.refresh
        refresh = dig(data, fields.refresh)
        refresh = refresh if isinstance(refresh, str) and refresh else None
    else:
        refresh_name, refresh = _first(data, REFRESH_FIELDS)
    if refresh is None and previous is not None:
        refresh, refresh_name = previous.refresh_token, previous.refresh_field
    # A token with a line break would become a header of its own (and requests would
    # quote it in an error message): refuse it, without showing it.
    if not _is_token_text(access) or (refresh is not None and not _is_token_text(refresh)):
        raise LoginError(
            "the token endpoint answered a token with spaces, line breaks or control characters; "
            "refused (it cannot be sent in a header safely)"
        )

    now = time.time() if now is None else now
    expires_at: float | None = None
    raw_exp = dig(data, fields.expires_in) if fields.expires_in else data.get("expires_in")
    lifetime = plausible_lifetime(raw_exp)
    if lifetime is not None:
        expires_at = now + lifetime
    else:  # none given, or not believable: the JWT's own exp, else unknown
        expires_at = jwt_expiry(access)

    token_type = data.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        token_type = default_type
    elif token_type.lower() == "bearer":
        token_type = "Bearer"
    return Token(
        access_token=access,
        token_type=token_type,
        refresh_token=refresh,
        expires_at=expires_at,
        user=user,
        refresh_field=refresh_name,
        obtained_at=now,
    )
