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
goes on, under the synchronous :func:`~session_magics.steps.drive` and the
asynchronous :func:`~session_magics.steps.drive_async` alike.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .errors import SessionMagicsError
from .profile import format_origin, origin_of
from .result import RECORD_KEYS, UNPARSED, ApiResult, dig, find_records, human_size

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
    ("total_results",),
    ("totalResults",),
    ("count",),
    ("meta", "total"),
    ("meta", "total_count"),
    ("meta", "totalCount"),
    ("meta", "count"),
    ("pagination", "total"),
    ("pagination", "total_count"),
    ("pagination", "totalCount"),
)
#: Where an answer says how many pages there are.
PAGE_COUNT_PATHS: tuple[tuple[str, ...], ...] = (
    ("total_pages",),
    ("totalPages",),
    ("page_count",),
    ("pageCount",),
    ("num_pages",),
    ("last_page",),
    ("lastPage",),
    ("meta", "total_pages"),
    ("meta", "totalPages"),
    ("meta", "last_page"),
    ("meta", "page_count"),
    ("pagination", "total_pages"),
    ("pagination", "totalPages"),
    ("pagination", "last_page"),
    ("pagination", "pages"),
)
#: Where an answer says how many records a page holds.
PAGE_SIZE_PATHS: tuple[tuple[str, ...], ...] = (
    ("per_page",),
    ("perPage",),
    ("page_size",),
    ("pageSize",),
    ("limit",),
    ("meta", "per_page"),
    ("meta", "page_size"),
    ("meta", "limit"),
    ("pagination", "per_page"),
    ("pagination", "page_size"),
    ("pagination", "limit"),
)
#: Offset/limit pagination: the names of the offset (query parameter or body field).
OFFSET_NAMES = ("offset", "skip", "start")
PLANNED_OFFSET_NAMES = (*OFFSET_NAMES, "from", "_start", "page[offset]")
LIMIT_NAMES = ("limit", "size", "per_page", "page_size")
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 10  # the HTTP session keeps 10 connections per host
_URL_LIKE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|/|\?)")

PageHook = Callable[[ApiResult], None]


def _value_at(data: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path``; a link object there (HAL, JSON:API: ``{"href": ...}``) gives its href."""
    found = dig(data, path)
    return found.get("href") if isinstance(found, dict) else found


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
            found = _value_at(data, path)
            if found is None:
                continue
            return _target(
                found, page_url=page_url, start_url=start_url, cursor_param=cursor_param, cursor=is_cursor
            )
    return _next_offset(data, page_url)


def _whole(value: Any) -> int | None:
    """``value`` as a whole number >= 0 (an int, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _first_whole(data: Any, paths: tuple[tuple[str, ...], ...]) -> int | None:
    for path in paths:
        found = _whole(dig(data, path))
        if found is not None:
            return found
    return None


def _offset_limit(data: dict[str, Any], page_url: str) -> tuple[str, int, int] | None:
    """Offset/limit pagination: (offset parameter, this page's offset, limit), from the
    query of the page's URL or the body's own fields."""
    query = dict(parse_qsl(urlsplit(page_url).query))
    for name in OFFSET_NAMES:
        offset = _whole(query.get(name, data.get(name)))
        if offset is None:
            continue
        for limit_name in LIMIT_NAMES:
            limit = _whole(data.get(limit_name, query.get(limit_name)))
            if limit:
                return name, offset, limit
    return None


def _next_offset(data: Any, page_url: str) -> str | None:
    """The next page of an offset/limit answer that tells its total and no link, e.g.
    ``{"items": [...], "offset": 0, "limit": 50, "total": 120}``."""
    if not isinstance(data, dict):
        return None
    found = _offset_limit(data, page_url)
    total = _first_whole(data, TOTAL_PATHS)
    if found is None or total is None:
        return None
    name, offset, limit = found
    if offset + limit >= total:
        return None
    return with_query(page_url, name, offset + limit)


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
            total = _value_at(data, path)
            if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
                return max(1, math.ceil(total / per_page))
    return None


@dataclass(frozen=True)
class PagePlan:
    """The pages after the first, known from the first answer: fetched at once."""

    urls: list[str]  # page 2, 3, ... in order
    how: str  # what told the number of pages, for the summary


def _page_step(page_url: str, nxt: str) -> tuple[str, int, int] | None:
    """How the next page's URL differs from this one's: (parameter, first value, step),
    when one whole-number query parameter changed and nothing else did."""
    a, b = urlsplit(page_url), urlsplit(nxt)
    if (a.scheme, a.netloc, a.path) != (b.scheme, b.netloc, b.path):
        return None
    qa = dict(parse_qsl(a.query, keep_blank_values=True))
    qb = dict(parse_qsl(b.query, keep_blank_values=True))
    changed = [k for k in qb if qa.get(k) != qb[k]]
    dropped = [k for k in qa if k not in qb]
    if len(changed) != 1 or dropped:
        return None
    name = changed[0]
    new = _whole(qb[name])
    old = _whole(qa[name]) if name in qa else None
    if new is None or (name in qa and old is None):
        return None
    if old is None:  # the first page had no such parameter: page 1 (or 0), offset 0
        old = 0 if name.lower() in PLANNED_OFFSET_NAMES or new == 1 else 1
    if new <= old:
        return None
    return name, old, new - old


def plan_pages(
    result: ApiResult, start_url: str, nxt: str | None, records: list[Any] | None, *, next_expr: str | None
) -> tuple[PagePlan | None, str | None]:
    """The URLs of every page after the first when the first answer tells how many
    there are, or (None, why the pages must be fetched one after another).

    Known in advance: a ``Link rel="last"``; a page count (``total_pages``,
    ``meta.last_page``, ...); a total (``total``, ``count``, ``meta.total``,
    ``X-Total-Count``) with the page size (``per_page``, ``page_size``, ``limit``, or
    the number of records on the first page). The next page's URL must differ from the
    first's in one number only: a page number or an offset.
    """
    if nxt is None:
        return None, None
    if next_expr is not None:
        return None, "--next gives each page's address"
    page_url = result.url or start_url
    step = _page_step(page_url, nxt)
    if step is None:
        data = result.data
        cursor = isinstance(data, dict) and any(dig(data, path) is not None for path in CURSOR_PATHS)
        return None, "each page names the next by a cursor" if cursor else "each page only links to the next"
    name, first, increment = step
    offsets = name.lower() in PLANNED_OFFSET_NAMES
    data = result.data if isinstance(result.data, dict) else {}
    size = _first_whole(data, PAGE_SIZE_PATHS) or (len(records) if records else 0)
    if offsets:
        # An offset moves by the page's size; anything else (an id to start after, say)
        # cannot be counted ahead.
        if increment != size and increment != len(records or ()):
            return None, "the next page's offset is not the page size"
        size = increment
    elif increment != 1:
        return None, "the next page's address is not the next page number"
    count: int | None = None
    how = ""
    last = result.links.get("last", {}).get("url")
    if last:
        value = _whole(dict(parse_qsl(urlsplit(urljoin(page_url, last)).query)).get(name))
        if value is not None and value >= first:
            count, how = (value - first) // increment + 1, 'Link rel="last"'
    if count is None:
        pages = _first_whole(data, PAGE_COUNT_PATHS)
        if pages is not None and not offsets:
            count, how = (pages if first == 0 else pages - first + 1), "the page count"
    if count is None and size:
        total = _first_whole(data, TOTAL_PATHS)
        header = "X-Total-Count"
        if total is None:
            total = _whole((result.headers.get(header) or "").strip())
        else:
            header = "the total"
        if total is not None:
            start = first if offsets else max(0, first - 1) * size  # records before this page
            count, how = max(1, math.ceil((total - start) / size)), header
    if count is None or count < 2:
        return None, "the first page does not say how many pages there are"
    urls = [with_query(nxt, name, first + k * increment) for k in range(1, count)]
    return PagePlan(urls, how), None


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


class Progress:
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
    concurrency: int = 1,
    **request: Any,
) -> Generator[NeedLogin, None, PagedResult]:
    """Fetch ``url`` and the pages after it; the renewal flow runs for every page.

    ``request`` holds the other arguments of :meth:`ApiSession.request_flow`
    (headers, body, auth, timeout), sent with every page. ``on_page`` is called
    with each page's result, in page order. ``progress`` shows a bar once more
    than :data:`PROGRESS_AFTER` pages are needed.

    ``concurrency`` > 1: when the first page tells how many pages there are (see
    :func:`plan_pages`), up to that many pages are fetched at once by worker
    threads. Each runs the same renewal flow: an expired token is refreshed once
    for all of them (the session's single-flight refresh), a login needed by any
    of them is yielded once (here, on the caller's side), and a ``Retry-After``
    answer makes all of them wait (:mod:`session_magics.backoff`). Records stay in
    page order. Otherwise the pages are fetched one after another, and the result
    says why (``.sequential``).

    ``frame=True`` is for when only a DataFrame is wanted (``--all --df``): records
    go into columns page by page and each page is let go once read, so the
    memory held is about the DataFrame's, not every page's body and every
    record's dict besides. The result then keeps only the last page in
    ``.pages`` and its ``.df`` is ready.
    """
    walk = PageWalk.begin(
        session,
        method,
        url,
        max_pages=max_pages,
        concurrency=concurrency,
        cursor=("parameter", cursor_param),
        frame=frame,
        on_page=on_page,
        progress=progress,
        max_body=request.get("max_body"),
    )
    start_url = walk.start_url
    started = time.perf_counter()
    target = start_url
    try:
        while True:
            result: ApiResult = yield from session.request_flow(method, target, **request)
            walk.arrive(result)
            found = walk.take(result, target)
            if walk.done:
                break
            n = walk.tally.pages
            nxt = next_page(result, start_url, cursor_param=cursor_param, next_expr=next_expr)
            if n == 1 and concurrency > 1 and nxt is not None and walk.allowed(nxt):
                plan, why = plan_pages(result, start_url, nxt, found, next_expr=next_expr)
                if plan is not None:
                    walk.concurrency = concurrency
                    last = yield from _fetch_planned(
                        session, method, plan, walk, max_pages, concurrency, request
                    )
                    if walk.done or last is None:
                        break
                    # The last planned page may still link further (the total grew): go on one by one.
                    result, n = last, walk.tally.pages
                    nxt = next_page(result, start_url, cursor_param=cursor_param, next_expr=next_expr)
                else:
                    walk.sequential = why
            if nxt is None or not walk.allowed(nxt) or walk.holds_too_much(nxt):
                break
            if n >= max_pages:
                walk.stop(
                    f"stopped after {max_pages} pages (--max-pages {max_pages}): more pages remain", nxt
                )
                break
            if n == PROGRESS_AFTER:
                walk.start_bar(min(walk.estimate, max_pages) if walk.estimate else None)
            target = nxt
    finally:
        walk.close()
    if walk.concurrency > 1:
        walk.tally.elapsed = time.perf_counter() - started  # pages overlapped: the walk's own time
    return walk.result(method)


class PageWalk:
    """The pages taken so far, in page order: counts, records (or DataFrame columns),
    the progress bar, and why the walk stopped early."""

    @classmethod
    def begin(
        cls,
        session: ApiSession,
        method: str,
        url: str,
        *,
        max_pages: int,
        concurrency: int,
        cursor: tuple[str, str],
        frame: bool,
        on_page: PageHook | None,
        progress: bool,
        max_body: int | None,
        records_of: Callable[[Any], list[Any] | None] | None = None,
    ) -> PageWalk:
        """Check a walk's options and start it at ``url`` (REST and GraphQL walks alike);
        ``cursor`` is (what it is called, its name): ("parameter", "cursor")."""
        if max_pages < 1:
            raise SessionMagicsError("--max-pages must be at least 1")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise SessionMagicsError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
        if not cursor[1]:
            raise SessionMagicsError(f"the cursor {cursor[0]} name is empty")
        start_url = session.profile.url(url)
        path = urlsplit(start_url).path or "/"
        bar = Progress(f"{method} {path}") if progress else None
        walk = cls(start_url, frame=frame, on_page=on_page, bar=bar, records_of=records_of)
        walk.most = max_body or session.max_body
        return walk

    def __init__(
        self,
        start_url: str,
        *,
        frame: bool,
        on_page: PageHook | None,
        bar: Progress | None,
        records_of: Callable[[Any], list[Any] | None] | None = None,
    ) -> None:
        self.start_url = start_url
        self.records_of = records_of or page_records
        self.start_origin = origin_of(start_url)
        self.tally = _Tally(start_url)
        self.pages: list[ApiResult] = []
        self.records: list[Any] = []
        self.builder: Any = None
        if frame:
            from .explore import FrameBuilder

            self.builder = FrameBuilder()
        self.on_page = on_page
        self.bar = bar
        self.fetched: set[str] = set()
        self.done = False
        self.stopped: str | None = None
        self.remaining: str | None = None
        self.estimate: int | None = None
        self.concurrency = 1
        self.sequential: str | None = None  # why the pages were fetched one after another
        self.arrived = 0  # pages arrived (in any order), for the bar
        self.arrived_records = 0
        self.most: int | None = None  # bytes all pages together may have (--max-body)

    def stop(self, why: str | None, remaining: str | None = None) -> None:
        self.done = True
        self.stopped = why
        self.remaining = remaining

    def allowed(self, nxt: str) -> bool:
        """Whether ``nxt`` may be fetched (same origin, not fetched before); else stop and say why."""
        shown = origin_of(nxt)
        if shown is None or shown != self.start_origin:
            where = format_origin(shown) if shown else repr(nxt)
            self.stop(f"the next page is on another origin ({where}) and was not followed", nxt)
            return False
        if nxt in self.fetched:
            self.stop(f"page {self.tally.pages} points back to a page already fetched")
            return False
        return True

    def holds_too_much(self, remaining: str | None) -> bool:
        """Whether the pages so far are together larger than ``--max-body`` (then stop
        before the next page, whose address is ``remaining``): the limit on what one
        answer may keep in memory applies to what ``--all`` keeps as well."""
        if self.most is None or self.tally.size <= self.most:
            return False
        n = self.tally.pages
        self.stop(
            f"stopped after {n} pages (--max-body {human_size(self.most)}: they are "
            f"{human_size(self.tally.size)} together): more pages remain",
            remaining,
        )
        return True

    def arrive(self, result: ApiResult) -> None:
        """A page came back (in any order): the bar counts it."""
        self.arrived += 1
        found = self.records_of(result.data) if result.ok else None
        self.arrived_records += len(found) if found is not None else 1
        if self.bar is not None:
            self.bar.update(self.arrived_records)

    def take(self, result: ApiResult, target: str) -> list[Any] | None:
        """Account for the next page in order; returns its records (None: it has no list)."""
        if self.builder is not None:
            self.pages.clear()  # only the last page is kept
        self.pages.append(result)
        self.tally.add(result)
        self.fetched.update((target, result.url))
        if self.on_page is not None:
            self.on_page(result)
        n = self.tally.pages
        if not result.ok:
            detail = getattr(result, "failure_detail", lambda: None)()
            answered = detail or f"{result.status_code} {result.reason}".rstrip()
            self.stop(f"page {n} answered {answered}")
            return None
        found = self.records_of(result.data)
        items = found if found is not None else [result.data]
        if self.builder is not None:
            self.builder.add(items)
        else:
            self.records.extend(items)
        self.tally.records += len(items)
        if found == [] and n > 1:
            self.done = True  # an empty page ends it
        if n == 1:
            self.estimate = estimate_pages(result, len(found) if found else 0)
        return found

    def start_bar(self, total: int | None) -> None:
        if self.bar is not None and self.bar.bar is None:
            self.bar.start(self.arrived, total, self.arrived_records)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def result(self, method: str) -> PagedResult:
        paged = PagedResult(
            self.pages,
            self.records,
            method=method,
            stopped=self.stopped,
            next_url=self.remaining,
            frame=self.builder.frame() if self.builder is not None else None,
            tally=self.tally,
        )
        paged.concurrency = self.concurrency
        paged.sequential = self.sequential if self.tally.pages > 1 else None
        return paged


class _Cancelled(Exception):
    """The walk ended while this worker waited (for a login, or for its turn)."""


class _LoginGate:
    """One login for every worker: the first worker that needs one asks the walk's
    caller (through ``events``); the others wait for the same answer."""

    def __init__(self, session: ApiSession, events: Any) -> None:
        self.session = session
        self.events = events
        self.lock = threading.Lock()
        self.pending: threading.Event | None = None
        self.cancelled = False

    def ask(self, need: NeedLogin) -> None:
        with self.lock:
            if self.cancelled:
                raise _Cancelled
            if self.pending is None:
                if self.session.token is not None:
                    return  # another worker's login already gave a token: the flow retries with it
                self.pending = threading.Event()
                self.events.put(("login", -1, need))
            event = self.pending
        event.wait()
        if self.cancelled:
            raise _Cancelled

    def answered(self) -> None:
        with self.lock:
            event, self.pending = self.pending, None
        if event is not None:
            event.set()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            event = self.pending
        if event is not None:
            event.set()


def _fetch_planned(
    session: ApiSession,
    method: str,
    plan: PagePlan,
    walk: PageWalk,
    max_pages: int,
    concurrency: int,
    request: dict[str, Any],
) -> Generator[NeedLogin, None, ApiResult | None]:
    """Fetch the planned pages with ``concurrency`` threads; take them in page order.

    Returns the last page taken, or None when the walk ended (``walk.done``).
    A login needed by a worker is yielded here, once for all of them. Pages wait
    to be taken in a window of twice ``concurrency`` ahead of the next in order,
    so memory stays bounded when one page is slow.
    """
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from .backoff import SharedBackoff, sharing
    from .errors import Interrupted
    from .steps import drive

    urls = plan.urls[: max(0, max_pages - 1)]
    if len(plan.urls) > len(urls):
        beyond = plan.urls[len(urls)]
    else:
        beyond = None
    events: queue.SimpleQueue[tuple[str, int, Any]] = queue.SimpleQueue()
    backoff = SharedBackoff()
    logins = _LoginGate(session, events)
    done = threading.Event()

    def fetch(index: int, url: str) -> None:
        try:
            if done.is_set():
                raise _Cancelled
            backoff.wait()
            with sharing(backoff):
                result: ApiResult = drive(session.request_flow(method, url, **request), logins.ask)
            if result.ok:
                result.data  # noqa: B018  (parsed here, in parallel with the other pages)
            events.put(("page", index, result))
        except BaseException as exc:  # handed to the walk, raised there in page order
            events.put(("error", index, exc))

    walk.estimate = 1 + len(plan.urls)
    if 1 + len(urls) > PROGRESS_AFTER:
        walk.start_bar(1 + len(urls))
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="session-magics-page")
    window = 2 * concurrency
    submitted = 0
    taken = 0
    waiting: dict[int, Any] = {}
    last: ApiResult | None = None
    try:
        while True:
            while submitted < len(urls) and submitted < taken + window:
                pool.submit(fetch, submitted, urls[submitted])
                submitted += 1
            if taken >= len(urls):
                break
            try:
                kind, index, value = events.get()
            except KeyboardInterrupt:
                raise Interrupted(f"{method} {_short(walk.start_url)}: interrupted") from None
            if kind == "login":
                yield value
                logins.answered()
                continue
            if kind == "page":
                walk.arrive(value)
            waiting[index] = value
            while taken in waiting:
                item = waiting.pop(taken)
                if isinstance(item, BaseException):
                    raise item
                walk.take(item, urls[taken])
                taken += 1
                last = item
                if walk.done:
                    return None
                if taken < len(urls) and walk.holds_too_much(urls[taken]):
                    return None
        if beyond is not None:
            n = walk.tally.pages
            walk.stop(f"stopped after {n} pages (--max-pages {max_pages}): more pages remain", beyond)
            return None
        return last
    finally:
        done.set()
        backoff.cancel()
        logins.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def _short(url: str) -> str:
    from .transport import safe_url

    return safe_url(url)


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
        self.redactor = pages[-1].redactor
        if tally is None:
            tally = _Tally(pages[0].url)
            for page in pages:
                tally.add(page)
            tally.records = len(records)
        self._tally = tally
        if frame is not None:
            self._df = frame
            self._records = UNPARSED  # type: ignore[assignment]

    #: How many pages were fetched at once (1: one after another).
    concurrency = 1
    #: Why the pages were fetched one after another although more at once were allowed.
    sequential: str | None = None

    @property
    def ok(self) -> bool:
        return self.pages[-1].ok  # (a GraphQL page with errors is not ok, whatever its status)

    def problem(self) -> str:
        return self.pages[-1].problem()

    def failure_detail(self) -> str | None:
        detail = getattr(self.pages[-1], "failure_detail", None)
        return detail() if detail is not None else None

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
        if self._records is UNPARSED:
            self._records = self._df.to_dict(orient="records")
        return self._records

    @property
    def df(self) -> pandas.DataFrame:
        if self._df is UNPARSED:
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
            f"· {self.elapsed * 1000:.0f} ms · {human_size(self.size)}{self._how_fetched()}"
        )

    def _how_fetched(self) -> str:
        if self.concurrency > 1:
            return f" · {self.concurrency} at a time"
        if self.sequential:
            return f" · one page at a time: {self.sequential}"
        return ""

    def __repr__(self) -> str:
        return self.redactor.text(
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
            if self._summary_shown_in_this_cell():  # the note comes first (below the line)
                bundle["text/plain"] = f"{note}\n{bundle['text/plain']}"
            else:  # the note comes right below the summary line the display starts with
                head, _, rest = bundle["text/plain"].partition("\n")
                bundle["text/plain"] = f"{head}\n{note}\n{rest}"
            if "text/html" in bundle:
                bundle["text/html"] = (
                    f'<div style="color:#b26a00"><b>{html.escape(note)}</b></div>' + bundle["text/html"]
                )
        bundle["text/plain"] = self.redactor.text(bundle["text/plain"])
        if "text/html" in bundle:
            bundle["text/html"] = self.redactor.text(bundle["text/html"])
        return bundle, metadata
