"""Data served by the demo API: the Palmer penguins and synthetic records.

The penguins CSV ships with the ``palmerpenguins`` package. Importing that
package pulls in pandas, so the file is located through the package's resource
reader without executing its ``__init__``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import importlib.resources
import importlib.util
import io
import json
from typing import Any

PENGUIN_INTS = frozenset({"flipper_length_mm", "body_mass_g", "year"})
PENGUIN_FLOATS = frozenset({"bill_length_mm", "bill_depth_mm"})


def _read_penguins_csv() -> str:
    spec = importlib.util.find_spec("palmerpenguins")
    if spec is None:
        raise RuntimeError(
            "the demo API needs the 'palmerpenguins' package: pip install 'session-magics[demo]'"
        )
    loader: Any = spec.loader
    reader = None
    if loader is not None and hasattr(loader, "get_resource_reader"):
        reader = loader.get_resource_reader(spec.name)
    if reader is not None and hasattr(reader, "files"):
        resource = reader.files().joinpath("data", "penguins.csv")
    else:  # pragma: no cover - unusual loaders; this imports the package (and pandas)
        resource = importlib.resources.files("palmerpenguins").joinpath("data", "penguins.csv")
    text: str = resource.read_text(encoding="utf-8")
    return text


def _convert(field: str, value: str) -> Any:
    if value == "NA" or value == "":
        return None
    if field in PENGUIN_INTS:
        return int(value)
    if field in PENGUIN_FLOATS:
        return float(value)
    return value


@functools.cache
def penguins() -> tuple[dict[str, Any], ...]:
    """All 344 penguins as dicts with an ``id`` (1-based) first, ``None`` for NA."""
    rows = csv.DictReader(io.StringIO(_read_penguins_csv()))
    return tuple(
        {"id": i, **{k: _convert(k, v) for k, v in row.items()}} for i, row in enumerate(rows, start=1)
    )


def synthetic_record(i: int) -> dict[str, Any]:
    """Record number ``i`` (1-based) of the synthetic ``/records`` collection."""
    return {
        "id": i,
        "name": f"record-{i}",
        "group": "abcdefgh"[i % 8],
        "value": round((i * 7919 % 10007) / 100.0, 2),
        "active": i % 3 != 0,
    }


_BIG_PAD = "x" * 64


@functools.lru_cache(maxsize=4)
def big_json(megabytes: float) -> bytes:
    """A JSON array of records totalling about ``megabytes`` MB (10**6 bytes).

    The last few bodies are cached, so repeated downloads measure the transfer,
    not the generation.
    """
    target = int(megabytes * 1_000_000)
    parts: list[str] = []
    size = 2
    i = 0
    while size < target:
        i += 1
        rec = f'{{"id":{i},"name":"record-{i}","value":{i * 0.5!r},"payload":"{_BIG_PAD}"}}'
        parts.append(rec)
        size += len(rec) + 1
    return ("[" + ",".join(parts) + "]").encode()


SMALL_DOC: dict[str, Any] = {
    "name": "small",
    "description": "About one kilobyte of JSON, for latency measurements.",
    "items": [
        {"id": i, "label": f"item-{i}", "value": i * 1.5, "tags": ["alpha", "beta"]} for i in range(1, 15)
    ],
}
SMALL_BODY = json.dumps(SMALL_DOC, separators=(",", ":")).encode()


def encode_cursor(kind: str, offset: int) -> str:
    """An opaque cursor for ``offset`` (URL-safe base64 of ``kind:offset``, unpadded)."""
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The offset in a cursor of :func:`encode_cursor` with the same ``kind``; any other
    text raises ``ValueError("The cursor is not valid")``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        found, _, number = raw.partition(":")
        offset = int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("The cursor is not valid") from None
    if found != kind or offset < 0:
        raise ValueError("The cursor is not valid")
    return offset
