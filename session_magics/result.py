"""ApiResult: a ``requests.Response`` look-alike made for exploring.

* ``status_code``, ``headers``, ``text``, ``content``, ``json()``, ``ok``, ``url``,
  ``raise_for_status()`` behave as in requests;
* ``.data`` is the parsed body (JSON, else text), ``.df`` a pandas DataFrame when
  the body is a list of records or holds one (``results``, ``data``, ``items``...);
* it displays itself, bounded: a summary line, JSON as ``application/json`` (a
  collapsible tree in JupyterLab) when it is small, else a truncated preview, and
  tables as a bounded HTML table. A 10 MB answer never puts 10 MB into a notebook.
* ``headers_text()`` shows headers with credentials redacted.

Every display (text, HTML, the JSON tree), the ``repr`` and ``headers_text()`` hide
the session's secrets wherever the server echoes them (``redactor``: a body, a
header, the URL; plain, URL-, JSON- or HTML-escaped). ``.data``, ``.text``,
``.json()`` and ``.df`` give the answer as it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    import requests
    from requests.structures import CaseInsensitiveDict

REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)
RECORD_KEYS = ("results", "data", "items", "records", "rows", "entries", "values")
MAX_JSON_BYTES = 100_000  # above this, no JSON tree: a preview
MAX_TEXT_CHARS = 20_000
MAX_TABLE_ROWS = 20
UNPARSED = object()  # a lazily computed value (the body as data, the DataFrame) not computed yet


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], extra: Iterable[str] = ()
) -> list[tuple[str, str]]:
    hidden = REDACTED_HEADERS | {h.lower() for h in extra}
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for key, value in items:
        if key.lower() in hidden:
            scheme = value.split(" ", 1)[0] if " " in value and key.lower().endswith("authorization") else ""
            out.append((key, f"{scheme} ●●●●●●".strip()))
        else:
            out.append((key, value))
    return out


def dig(data: Any, path: str | Sequence[str]) -> Any:
    """The value at ``path`` in nested JSON objects (``"data.token"``, or ``("data", "token")``),
    or None where a step is missing or reaches something that is not an object."""
    for key in path.split(".") if isinstance(path, str) else path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def find_records(data: Any) -> list[Any] | None:
    """The list of records in a JSON answer: the answer itself, or a list inside a wrapper."""
    if isinstance(data, list):
        return data if data and all(isinstance(r, dict) for r in data[:50]) else None
    if isinstance(data, dict):
        for key in RECORD_KEYS:
            value = data.get(key)
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value[:50]):
                return value
        lists = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1:
            return lists[0]
    return None


_BINARY_TYPES = ("application/octet-stream", "application/pdf", "application/zip", "application/gzip")
_BINARY_PREFIXES = ("image/", "audio/", "video/", "font/")
_TEXT_HINTS = ("json", "xml", "javascript", "csv", "yaml", "x-www-form-urlencoded", "html")


def _looks_binary(ctype: str, content: bytes) -> bool:
    """Whether a body is binary: by its content type, else by NUL bytes or invalid UTF-8."""
    ctype = ctype.split(";")[0].strip().lower()
    if ctype.startswith("text/") or any(hint in ctype for hint in _TEXT_HINTS):
        return False
    if ctype in _BINARY_TYPES or ctype.startswith(_BINARY_PREFIXES):
        return True
    head = content[:4096]
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # not just a character cut at the end of the sample
    return False


SUMMARY_COLORS = {True: "#2e7d32", False: "#c62828"}  # a successful answer, an error status


def summary_html(text: str, ok: bool = True) -> str:
    """The summary line as HTML: one look for every display (JSON tree, table, text,
    DataFrame, extract), green for a successful answer, red for an error status."""
    from html import escape  # here, not at the top: %load_ext imports this module (advance_cell)

    return f'<div style="font-family:monospace;color:{SUMMARY_COLORS[bool(ok)]}">{escape(text)}</div>'


class SummaryLine:
    """The summary line on its own: shown above a display that cannot carry it (a JSON
    tree, a DataFrame, an extract), styled as the line a table or text result starts with."""

    def __init__(self, text: str, ok: bool = True) -> None:
        self.text = text
        self.ok = ok

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text, "text/html": summary_html(self.text, self.ok)}


def human_size(n: int) -> str:
    """``n`` bytes as people read them: ``512 B``, ``1.5 KB``, ``3.0 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


#: Advanced when an IPython cell starts and when it ends (its pre_run_cell and
#: post_run_cell events, see magics.load): tells one cell from the next, and from the
#: time between cells.
_cell_serial = 0


def advance_cell(*_args: Any) -> None:
    global _cell_serial
    _cell_serial += 1


class ApiResult:
    """The answer to one ``%%api`` request."""

    def __init__(
        self, response: requests.Response, *, method: str | None = None, elapsed: float | None = None
    ) -> None:
        self.response = response
        self._elapsed = elapsed
        self.method = method or (response.request.method if response.request else "GET") or "GET"
        self._data: Any = UNPARSED
        self._df: Any = UNPARSED
        self.extra_redacted: tuple[str, ...] = ()
        self.json_error: str | None = None  # why a body declared as JSON did not parse
        self.saved_to: str | None = None  # --save: the file that holds the body
        self.saved_bytes = 0
        self._summary_cell: int | None = None  # the cell whose own line showed the summary
        from .redact import Redactor

        self.redactor = Redactor()  # the secrets hidden in every display (set by the session)

    # -- requests.Response look-alike
    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def reason(self) -> str:
        return self.response.reason or ""

    @property
    def headers(self) -> CaseInsensitiveDict[str]:
        return self.response.headers

    @property
    def url(self) -> str:
        return self.response.url

    @property
    def ok(self) -> bool:
        return self.response.ok

    @property
    def text(self) -> str:
        return self.response.text

    @property
    def content(self) -> bytes:
        if self.saved_to is not None:
            raise ValueError(f"the body was saved to {self.saved_to}, not kept in memory: read it from there")
        return self.response.content

    @property
    def elapsed(self) -> float:
        """Seconds from sending to the answer (including redirects and retries)."""
        if self._elapsed is not None:
            return self._elapsed
        return self.response.elapsed.total_seconds()

    @property
    def links(self) -> dict[str, Any]:
        return self.response.links

    def json(self, **kwargs: Any) -> Any:
        return self.response.json(**kwargs)

    def raise_for_status(self) -> None:
        self.response.raise_for_status()

    # -- exploration
    @property
    def is_json(self) -> bool:
        ctype = self.headers.get("Content-Type", "").lower()
        return "json" in ctype

    @property
    def data(self) -> Any:
        """The parsed body: JSON when it parses, else the text (bytes for binary answers)."""
        if self._data is UNPARSED:
            content = self.content
            ctype = self.headers.get("Content-Type", "").lower()
            try:
                self._data = json.loads(content) if content else None
            except (ValueError, RecursionError) as exc:
                if self.is_json:
                    self.json_error = str(exc)[:200] if isinstance(exc, ValueError) else "nested too deeply"
                self._data = content if _looks_binary(ctype, content) else self.text
        return self._data

    @property
    def records(self) -> list[Any] | None:
        return find_records(self.data)

    @property
    def df(self) -> pandas.DataFrame:
        """The records as a pandas DataFrame (nested fields flattened with json_normalize)."""
        if self._df is UNPARSED:
            try:
                import pandas as pd
            except ImportError:
                raise ImportError(".df needs pandas: pip install 'session-magics[pandas]'") from None
            records = self.records
            if records is None:
                raise ValueError("the answer holds no list of records to make a DataFrame of; look at .data")
            self._df = pd.json_normalize(records)
        return self._df

    def headers_text(self, *, request: bool = True) -> str:
        lines = []
        req = self.response.request
        if request and req is not None:
            lines.append(f"> {req.method} {req.url}")
            lines += [f"> {k}: {v}" for k, v in redact_headers(req.headers, self.extra_redacted)]
            lines.append(">")
        lines.append(f"< {self.status_code} {self.reason}")
        lines += [f"< {k}: {v}" for k, v in redact_headers(self.headers, self.extra_redacted)]
        return self.redactor.text("\n".join(lines))

    # -- display
    def summary(self) -> str:
        size = self.saved_bytes if self.saved_to is not None else len(self.content)
        ctype = self.headers.get("Content-Type", "").split(";")[0] or "no content type"
        line = (
            f"{self.method} {self.url} → {self.status_code} {self.reason} "
            f"· {self.elapsed * 1000:.0f} ms · {human_size(size)} {ctype}"
        )
        more = self.more_pages()
        return self.redactor.text(f"{line} · {more}" if more else line)

    def more_pages(self) -> str | None:
        """When this answer is one page of several: e.g. "page 1 of 2 — use --all for
        every page" (a single page shown as if it were everything misleads), else None."""
        if not self.ok or self.saved_to is not None:
            return None
        from .pagination import page_hint

        return page_hint(self)

    def summary_line(self) -> SummaryLine:
        """The summary line as a display of its own (see :class:`SummaryLine`)."""
        return SummaryLine(self.summary(), self.ok)

    def summary_shown(self) -> None:
        """``%api`` showed the summary line above the cell's value: the result's own
        display in that same cell leaves it out (shown once); displayed later, it
        carries the line again."""
        self._summary_cell = _cell_serial

    def _summary_shown_in_this_cell(self) -> bool:
        return self._summary_cell == _cell_serial

    def __repr__(self) -> str:
        return self.redactor.text(f"<ApiResult {self.method} {self.url} → {self.status_code} {self.reason}>")

    @property
    def retries(self) -> int:
        """How many times urllib3 sent the request again (429 / 503 on idempotent methods)."""
        retry = getattr(self.response.raw, "retries", None)
        return len(getattr(retry, "history", ()) or ())

    def problem(self) -> str:
        """What an error status means, in a few words (for the display)."""
        code = self.status_code
        if code >= 500:
            text = "the server failed to handle the request (an error on its side)"
        elif code == 429:
            text = "too many requests: the server asks to slow down"
        else:
            text = "the server refused the request"
        wait = self.headers.get("Retry-After")
        if wait:
            text += f"; it asks to wait before trying again (Retry-After: {wait[:40]})"
        if self.retries:
            text += f"; sent {self.retries + 1} times in all (idempotent requests are retried)"
        return self.redactor.text(text)

    def _preview_text(self) -> str:
        return self.redactor.text(self._raw_preview_text())

    def _raw_preview_text(self) -> str:
        if self.saved_to is not None:
            return f"The body ({human_size(self.saved_bytes)}) was saved to {self.saved_to}."
        data = self.data
        if isinstance(data, bytes):
            return f"<{human_size(len(data))} of binary data: use .content, or --save FILE>"
        if isinstance(data, str):
            text = data
            if self.json_error is not None:
                note = f"The body is not valid JSON, although its content type says so ({self.json_error})"
                text = f"{note}:\n{text}"
            if len(text) > MAX_TEXT_CHARS:
                cut = len(text) - MAX_TEXT_CHARS
                text = text[:MAX_TEXT_CHARS] + f"\n… ({cut:,} more characters: use .data, .text or .df)"
            return text
        from .render import json_preview

        text, cut_short = json_preview(data, MAX_TEXT_CHARS)  # encodes no more than it shows
        if cut_short:
            text += f"\n… (cut at {MAX_TEXT_CHARS:,} characters: use .data, .text or .df)"
        return text

    def _table_html(self) -> str | None:
        records = self.records
        if not records:
            return None
        shown = records[:MAX_TABLE_ROWS]
        from .render import html_table

        table = html_table(self.redactor.data(shown), max_cols=30)  # no pandas import just to show 20 rows
        more = len(records) - len(shown)
        note = (
            f"<div><em>{len(records):,} records, first {len(shown)} shown; all in .df</em></div>"
            if more > 0
            else ""
        )
        return table + note

    @property
    def json_tree(self) -> bool:
        """Whether the display is a JSON tree (which cannot carry the summary line itself)."""
        return (
            self.ok
            and self.saved_to is None
            and self.is_json
            and len(self.content) <= MAX_JSON_BYTES
            and not isinstance(self.data, str)
            and self.records is None
        )

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        summary = self.summary()
        carried = not self._summary_shown_in_this_cell()
        lines = [summary] if carried else []
        if not self.ok:
            lines.append(f"HTTP {self.status_code} {self.reason}: {self.problem()}.")
        text = "\n".join([*lines, self._preview_text()])
        bundle: dict[str, Any] = {"text/plain": self.redactor.text(text)}
        if self.json_tree:
            bundle["application/json"] = self.redactor.data(self.data)
            return bundle, {"application/json": {"expanded": False, "root": "data"}}
        from html import escape

        color = SUMMARY_COLORS[bool(self.ok)]
        head = summary_html(summary, self.ok) if carried else ""
        if not self.ok:
            status = escape(self.redactor.text(f"HTTP {self.status_code} {self.reason}"))
            head += f'<div style="color:{color}"><b>{status}</b>: {escape(self.problem())}.</div>'
        table = self._table_html() if self.ok else None
        body = table if table is not None else f"<pre>{escape(self._preview_text())}</pre>"
        bundle["text/html"] = head + body
        return bundle, {}
