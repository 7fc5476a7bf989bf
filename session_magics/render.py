"""Bounded, pandas-free rendering for result displays.

A result's display must cost little and stay small whatever the answer's size:
these helpers look at a bounded prefix of the data only. ``html_table`` makes
the same table ``pandas.json_normalize(rows).to_html()`` would (nested objects
flattened to ``a.b`` columns, missing values blank) for the first rows, without
importing pandas; ``json_preview`` stops encoding once it has enough characters.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

MAX_CELL_CHARS = 200


def flatten(record: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """A record with nested objects flattened to ``parent.child`` keys (as json_normalize)."""
    if not isinstance(record, dict):
        return {prefix or "value": record}
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return html.escape(text)


def html_table(rows: Sequence[Any], *, max_cols: int = 30) -> str:
    """An HTML table of ``rows`` (all of them: pass a bounded slice)."""
    flat = [flatten(row) for row in rows]
    columns: dict[str, None] = {}
    for row in flat:
        for key in row:
            columns.setdefault(key, None)
    names = list(columns)
    hidden = len(names) - max_cols
    if hidden > 0:
        names = names[:max_cols]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    if hidden > 0:
        head += f"<th>… {hidden} more</th>"
    lines = [
        '<table border="0" class="dataframe">',
        f'<thead><tr style="text-align: right;"><th></th>{head}</tr></thead>',
        "<tbody>",
    ]
    for i, row in enumerate(flat):
        cells = "".join(f"<td>{_cell(row.get(name))}</td>" for name in names)
        if hidden > 0:
            cells += "<td>…</td>"
        lines.append(f"<tr><th>{i}</th>{cells}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _chunks(data: Any) -> Iterator[str]:
    encoder = json.JSONEncoder(indent=2, ensure_ascii=False, default=str)
    return encoder.iterencode(data)


def json_preview(data: Any, limit: int) -> tuple[str, bool]:
    """Indented JSON of ``data``, at most ``limit`` characters; and whether it was cut.

    The encoder is lazy, so a 10 MB answer costs as much as its first ``limit``
    characters, not a full ``json.dumps``.
    """
    parts: list[str] = []
    size = 0
    chunks: Iterable[str] = _chunks(data)
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return "".join(parts)[:limit], True
    return "".join(parts), False
