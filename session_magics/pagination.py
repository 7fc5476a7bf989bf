"""Follow pagination (``%%api --all``): every page, one combined result.

Where the next page is found, first match wins:

1. a ``Link`` header with ``rel="next"`` (RFC 8288: GitHub, GitLab, the demo API);
2. in a JSON object body, a next URL: ``next``, ``next_page``, ``nextPage``,
   ``next_url``, ``nextLink``, ``@odata.nextLink``, ``links.next``, ``_links.next.href``,
   ``meta.next``, ``paging.next``, ``pagination.next``. A value that looks like a
   URL or path (``/``, ``?``, ``scheme://``) is fetched relative to the page's URL;
   a whole number is a page number, sent as the ``page`` query parameter;
   any other string is a cursor;
3. a cursor: ``next_cursor``, ``nextCursor``, ``meta.next_cursor``,
   ``pagination.next_cursor``, ``response_metadata.next_cursor``, ``cursor.next``,
   ``next_page_token``, ``nextPageToken``. It is sent back as the ``cursor``
   query parameter of the first request's URL (``cursor_param`` changes the name).

``next_expr`` (``--next``) is a JMESPath expression that gives the next URL, page
number or cursor instead. ``has_more: false`` (or ``hasMore``) ends the pagination
whatever else the body says, and so does an empty page after the first.

Pagination stops, and says why in :attr:`PagedResult.stopped`, when ``max_pages``
pages were fetched and more remain, when a page fails (its status is kept), when
the next page is on another origin (never followed), or when the server points
back to a page already fetched.

:func:`paginate` is a generator like :meth:`ApiSession.request_flow`: every page
goes through the renewal flow with ``yield from``, so a session that expires in
the middle of a pagination is renewed (or a login asked for) and the pagination
goes on, under the synchronous :func:`~session_magics.session.drive` and the
asynchronous driver alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .errors import SessionMagicsError
from .profile import format_origin, origin_of
from .result import _UNPARSED, RECORD_KEYS, ApiResult, _size, find_records

if TYPE_CHECKING:
    import pandas

    from .session import ApiSession, NeedLogin

DEFAULT_MAX_PAGES = 100
DEFAULT_CURSOR_PARAM = "cursor"
PAGE_PARAM = "page"
#: A progress bar appears once more than this many pages are needed.
PROGRESS_AFTER = 2

NEXT_URL_PATHS: tuple[tuple[str, ...], ...] = (
    ("next",),
    ("next_page",),
    ("nextPage",),
    ("next_url",),
    ("nextUrl",),
    ("next_link",),
    ("nextLink",),
    ("@odata.nextLink",),
    ("links", "next"),
    ("_links", "next"),
    ("meta", "next"),
    ("paging", "next"),
    ("pagination", "next"),
    ("pagination", "next_url"),
)
CURSOR_PATHS: tuple[tuple[str, ...], ...] = (
    ("next_cursor",),
    ("nextCursor",),
    ("meta", "next_cursor"),
    ("meta", "nextCursor"),
    ("pagination", "next_cursor"),
    ("pagination", "nextCursor"),
    ("response_metadata", "next_cursor"),
    ("cursor", "next"),
    ("next_page_token",),
    ("nextPageToken",),
)
MORE_FLAGS = ("has_more", "hasMore")
TOTAL_PATHS: tuple[tuple[str, ...], ...] = (
    ("total",),
    ("total_count",),
    ("totalCount",),
    ("meta", "total"),
    ("meta", "total_count"),
    ("pagination", "total"),
)
_URL_LIKE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|/|\?)")

PageHook = Callable[[ApiResult], None]


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    if isinstance(data, dict):  # HAL / JSON:API: {"href": "..."}
        data = data.get("href")
    return data


def with_query(url: str, name: str, value: Any) -> str:
    """``url`` with the query parameter ``name`` set to ``value`` (replaced if present)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, str(value)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _target(value: Any, *, page_url: str, start_url: str, cursor_param: str, cursor: bool) -> str | None:
    """The URL of the next page, given what the body said (None: no next page)."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, bool):  # True tells where nothing is
        return None
    if isinstance(value, int):
        return with_query(start_url, PAGE_PARAM, value)
    if not isinstance(value, str):
        return None
    if not cursor:
        if _URL_LIKE.match(value):
            return urljoin(page_url, value)
        if value.isdigit():
            return with_query(start_url, PAGE_PARAM, value)
    return with_query(start_url, cursor_param, value)


def next_page(
    result: ApiResult,
    start_url: str,
    *,
    cursor_param: str = DEFAULT_CURSOR_PARAM,
    next_expr: str | None = None,
) -> str | None:
    """The absolute URL of the page after ``result``, or None when it is the last."""
    page_url = result.url or start_url
    data = result.data
    if next_expr is not None:
        from .explore import extract

        found = extract(data, next_expr, option="--next")
        return _target(found, page_url=page_url, start_url=start_url, cursor_param=cursor_param, cursor=False)
    if isinstance(data, dict):
        for flag in MORE_FLAGS:
            if data.get(flag) is False:
                return None
    link = result.links.get("next")
    if link and link.get("url"):
        return urljoin(page_url, link["url"])
    if not isinstance(data, dict):
        return None
    for paths, is_cursor in ((NEXT_URL_PATHS, False), (CURSOR_PATHS, True)):
        for path in paths:
            found = _dig(data, path)
            if found is None:
                continue
            return _target(
                found, page_url=page_url, start_url=start_url, cursor_param=cursor_param, cursor=is_cursor
            )
    return None


def page_records(data: Any) -> list[Any] | None:
    """The records of one page: its list of records, an empty list, or None (no list at all)."""
    found = find_records(data)
    if found is not None:
        return found
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in RECORD_KEYS:
            value = data.get(key)
            if isinstance(value, list):
                return value
    return None


def estimate_pages(result: ApiResult, per_page: int) -> int | None:
    """How many pages there are, when the first page tells (``rel="last"`` or a total)."""
    last = result.links.get("last", {}).get("url")
    if last:
        for key, value in parse_qsl(urlsplit(last).query):
            if key == PAGE_PARAM and value.isdigit():
                return int(value)
    data = result.data
    if isinstance(data, dict) and per_page > 0:
        for path in TOTAL_PATHS:
            total = _dig(data, path)
            if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
                return max(1, math.ceil(total / per_page))
    return None


#: Query parameters that say a request asked for a page other than the first by a
#: cursor or an offset (its number is then unknown).
_NOT_FIRST_PARAMS = frozenset(
    {"cursor", "after", "before", "offset", "start", "page_token", "pagetoken", "starting_after"}
    | {"continuation"}
)


def page_hint(result: ApiResult) -> str | None:
    """For one page of a paginated answer fetched without ``--all``: which page it is and
    that more follow, e.g. ``page 1 of 2 — use --all for every page``; None when the
    answer does not announce a next page."""
    try:
        if next_page(result, result.url) is None:
            return None
    except Exception:  # a summary line must not fail because of an odd body
        return None
    found = page_records(result.data)
    total = estimate_pages(result, len(found) if found else 0)
    query = dict(parse_qsl(urlsplit(result.url).query))
    number = query.get(PAGE_PARAM, "")
    current: int | None
    if number.isdigit():
        current = int(number)
    elif any(key.lower() in _NOT_FIRST_PARAMS for key in query):
        current = None
    else:
        current = 1
    if current is not None and total is not None and total > current:
        where = f"page {current} of {total}"
    elif current is not None:
        where = f"page {current}, more pages follow"
    else:
        where = "more pages follow"
    return f"{where} — use --all for every page"


def _scheme_netloc(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _same_origin(url: str, start_key: tuple[str, str], start_origin: Any) -> bool:
    """Whether ``url`` is on the first page's origin. The same scheme and host:port text
    (the usual case, and cheap) is; anything else is decided by :func:`origin_of`."""
    if start_origin is not None and _scheme_netloc(url) == start_key:
        return True
    found = origin_of(url)
    return found is not None and found == start_origin


class _Progress:
    """A tqdm.auto bar (a widget in notebooks, text on stderr elsewhere), made only when needed.

    In a notebook the widget's output is emptied when the walk ends, so a saved
    notebook keeps no stale "29%" line (the summary line says what was fetched).
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar: Any = None
        self.handle: Any = None

    def start(self, done: int, total: int | None, records: int) -> None:
        from tqdm.auto import tqdm
        from tqdm.autonotebook import tqdm as auto_tqdm
        from tqdm.std import tqdm as std_tqdm

        widget = auto_tqdm is not std_tqdm
        options: dict[str, Any] = {"display": False} if widget else {"dynamic_ncols": True}
        self.bar = tqdm(total=total, initial=done, desc=self.description, unit="page", leave=False, **options)
        self.bar.set_postfix_str(f"{records:,} records", refresh=not widget)
        if widget:
            from IPython.display import display

            self.handle = display(self.bar.container, display_id=True)

    def update(self, records: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{records:,} records", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)
            self.handle = None


def paginate(
    session: ApiSession,
    method: str,
    url: str,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    cursor_param: str = DEFAULT_CURSOR_PARAM,
    next_expr: str | None = None,
    progress: bool = True,
    frame: bool = False,
    on_page: PageHook | None = None,
    **request: Any,
) -> Generator[NeedLogin, None, PagedResult]:
    """Fetch ``url`` and the pages after it; the renewal flow runs for every page.

    ``request`` holds the other arguments of :meth:`ApiSession.request_flow`
    (headers, body, auth, timeout), sent with every page. ``on_page`` is called
    with each page's result as it arrives. ``progress`` shows a bar once more
    than :data:`PROGRESS_AFTER` pages are needed.

    ``frame=True`` is for when only a DataFrame is wanted (``--all --df``): records
    go into columns page by page and each page is let go once read, so the
    memory held is about the DataFrame's, not every page's body and every
    record's dict besides. The result then keeps only the last page in
    ``.pages`` and its ``.df`` is ready.
    """
    if max_pages < 1:
        raise SessionMagicsError("--max-pages must be at least 1")
    if not cursor_param:
        raise SessionMagicsError("the cursor parameter name is empty")
    start_url = session.profile.url(url)
    start_origin = origin_of(start_url)
    start_key = _scheme_netloc(start_url)
    tally = _Tally(start_url)
    pages: list[ApiResult] = []
    records: list[Any] = []
    builder = None
    if frame:
        from .explore import FrameBuilder

        builder = FrameBuilder()
    fetched: set[str] = set()
    stopped: str | None = None
    remaining: str | None = None
    estimate: int | None = None
    path = urlsplit(start_url).path or "/"
    bar = _Progress(f"{method} {path}") if progress else None
    target = start_url
    try:
        while True:
            result: ApiResult = yield from session.request_flow(method, target, **request)
            if builder is not None:
                pages.clear()  # only the last page is kept
            pages.append(result)
            tally.add(result)
            fetched.update((target, result.url))
            if on_page is not None:
                on_page(result)
            n = tally.pages
            if not result.ok:
                stopped = f"page {n} answered {result.status_code} {result.reason}".rstrip()
                break
            found = page_records(result.data)
            items = found if found is not None else [result.data]
            if builder is not None:
                builder.add(items)
            else:
                records.extend(items)
            tally.records += len(items)
            if bar is not None:
                bar.update(tally.records)
            if found == [] and n > 1:
                break  # an empty page ends it
            if n == 1:
                estimate = estimate_pages(result, len(found) if found else 0)
            nxt = next_page(result, start_url, cursor_param=cursor_param, next_expr=next_expr)
            if nxt is None:
                break
            if not _same_origin(nxt, start_key, start_origin):
                shown = origin_of(nxt)
                where = format_origin(shown) if shown else repr(nxt)
                stopped = f"the next page is on another origin ({where}) and was not followed"
                remaining = nxt
                break
            if nxt in fetched:
                stopped = f"page {n} points back to a page already fetched"
                break
            if n >= max_pages:
                stopped = f"stopped after {max_pages} pages (--max-pages {max_pages}): more pages remain"
                remaining = nxt
                break
            if bar is not None and n == PROGRESS_AFTER:
                bar.start(n, min(estimate, max_pages) if estimate else None, tally.records)
            target = nxt
    finally:
        if bar is not None:
            bar.close()
    return PagedResult(
        pages,
        records,
        method=method,
        stopped=stopped,
        next_url=remaining,
        frame=builder.frame() if builder is not None else None,
        tally=tally,
    )


class _Tally:
    """Counts over all pages, kept as they arrive (pages may be let go)."""

    def __init__(self, first_url: str) -> None:
        self.first_url = first_url
        self.pages = 0
        self.records = 0
        self.size = 0
        self.elapsed = 0.0

    def add(self, page: ApiResult) -> None:
        if self.pages == 0:
            self.first_url = page.url or self.first_url
        self.pages += 1
        self.size += len(page.content)
        self.elapsed += page.elapsed


class PagedResult(ApiResult):
    """All pages of a paginated answer.

    ``.pages`` is the list of page results, ``.data`` and ``.records`` the records of
    every page in one list (a page without a list adds its whole answer as one
    item), ``.df`` a DataFrame of them. ``status_code``, ``headers``, ``url``, ``text``
    and ``json()`` are those of the last page fetched. ``.stopped`` says why the
    pagination ended early (None when every page was fetched: ``.complete``), and
    ``.next_url`` is where it would have gone on. ``.page_count``, ``.size`` (bytes)
    and ``.elapsed`` (seconds) count every page.

    Made with ``frame=`` (see :func:`paginate`), it holds the DataFrame instead of
    the records: ``.pages`` has the last page only and ``.records`` are the
    DataFrame's rows.
    """

    def __init__(
        self,
        pages: list[ApiResult],
        records: list[Any],
        *,
        method: str | None = None,
        stopped: str | None = None,
        next_url: str | None = None,
        frame: pandas.DataFrame | None = None,
        tally: _Tally | None = None,
    ) -> None:
        if not pages:
            raise ValueError("a PagedResult needs at least one page")
        super().__init__(pages[-1].response, method=method or pages[-1].method)
        self.pages = pages
        self._records = records
        self.stopped = stopped
        self.next_url = next_url
        self.extra_redacted = pages[-1].extra_redacted
        if tally is None:
            tally = _Tally(pages[0].url)
            for page in pages:
                tally.add(page)
            tally.records = len(records)
        self._tally = tally
        if frame is not None:
            self._df = frame
            self._records = _UNPARSED  # type: ignore[assignment]

    @property
    def complete(self) -> bool:
        return self.stopped is None

    @property
    def page_count(self) -> int:
        return self._tally.pages

    @property
    def data(self) -> list[Any]:
        return self.records

    @property
    def records(self) -> list[Any]:
        if self._records is _UNPARSED:
            self._records = self._df.to_dict(orient="records")
        return self._records

    @property
    def df(self) -> pandas.DataFrame:
        if self._df is _UNPARSED:
            from .explore import frame_of

            self._df = frame_of(self._records)
        return self._df

    @property
    def elapsed(self) -> float:
        return self._tally.elapsed

    @property
    def size(self) -> int:
        """Bytes received, all pages together."""
        return self._tally.size

    @property
    def json_tree(self) -> bool:
        return False

    def summary(self) -> str:
        n = self._tally.pages
        return (
            f"{self.method} {self._tally.first_url} → {n} page{'s' if n != 1 else ''} "
            f"· {self._tally.records:,} records · {self.status_code} {self.reason} "
            f"· {self.elapsed * 1000:.0f} ms · {_size(self.size)}"
        )

    def __repr__(self) -> str:
        return (
            f"<PagedResult {self.method} {self._tally.first_url}: {self._tally.pages} pages, "
            f"{self._tally.records} records → {self.status_code} {self.reason}>"
        )

    def _preview_text(self) -> str:
        if not self.ok:
            return self.pages[-1]._preview_text()
        return super()._preview_text()

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle, metadata = super()._repr_mimebundle_(include, exclude)
        if self.stopped:
            import html

            note = f"Incomplete: {self.stopped}."
            head, _, rest = bundle["text/plain"].partition("\n")
            bundle["text/plain"] = f"{head}\n{note}\n{rest}"
            if "text/html" in bundle:
                bundle["text/html"] = (
                    f'<div style="color:#b26a00"><b>{html.escape(note)}</b></div>' + bundle["text/html"]
                )
        return bundle, metadata
