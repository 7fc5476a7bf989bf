"""%%api --all fetching pages at once (--concurrency), against the demo API with latency
and a second local server with other ways of telling the number of pages; all on
127.0.0.1. No test here asserts a duration: only counts, page orders and the order of
server-side timestamps."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from session_magics import SessionMagicsError
from session_magics.demo import DemoServer, ThreadedServer
from session_magics.errors import SessionExpired
from session_magics.pagination import paginate, plan_pages
from session_magics.profile import Profile
from session_magics.session import ApiSession, NeedLogin, drive
from session_magics.store import MemoryStore
from tests.ipython_helpers import DEMO_PASSWORD_ENV, demo_shell, login_and_run, login_demo
from tests.servers import demo_expiring


def session_for(server) -> ApiSession:
    session = ApiSession(Profile(name="c", base_url=server.url, user="demo"), MemoryStore())
    session.login("demo", "penguins")
    return session


def no_login(need):
    raise AssertionError(f"no login expected: {need}")


def page_threads_done() -> bool:
    """Wait (on a condition, not a fixed time) until no page worker is left."""
    for thread in threading.enumerate():
        if thread.name.startswith("session-magics-page"):
            thread.join(timeout=30)
    return not any(t.name.startswith("session-magics-page") and t.is_alive() for t in threading.enumerate())


class InFlight:
    """ASGI middleware: how many requests to ``path`` the server handled at once, at most,
    and the order in which they arrived."""

    def __init__(self, app, path):
        self.app, self.path = app, path
        self.now = 0
        self.most = 0
        self.arrivals: list[str] = []
        self.lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.arrivals.append(scope["query_string"].decode())
        try:
            await self.app(scope, receive, send)
        finally:
            with self.lock:
                self.now -= 1


def counting_records(latency_ms: int) -> tuple[DemoServer, InFlight]:
    """A demo API (not started) answering after ``latency_ms``, and what counts its
    requests to /records in flight."""
    server = DemoServer(latency_ms=latency_ms)
    server.app = counter = InFlight(server.app, "/records")
    return server, counter


class RateLimitOnce:
    """ASGI middleware: the n-th request on ``path`` is answered at once with 429 and
    ``Retry-After: 1``; every request's arrival time (time.monotonic) is kept."""

    def __init__(self, app, path, n):
        self.app, self.path, self.n = app, path, n
        self.arrivals: list[tuple[float, str]] = []
        self.limited_at: float | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        self.arrivals.append((time.monotonic(), scope["query_string"].decode()))
        if len(self.arrivals) == self.n:
            self.limited_at = time.monotonic()
            response = JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# -- page order and concurrency ----------------------------------------------------------


def test_pages_known_in_advance_come_at_once_and_stay_in_page_order():
    server, counter = counting_records(latency_ms=40)
    with server:
        session = session_for(server)
        flow = paginate(session, "GET", "/records?n=300&per_page=10", progress=False, concurrency=4)
        result = drive(flow, no_login)
    assert [r["id"] for r in result.records] == list(range(1, 301))
    assert result.page_count == 30 and result.complete
    assert 2 <= counter.most <= 4  # never more than asked
    assert result.concurrency == 4 and "4 at a time" in result.summary()


def test_concurrency_one_fetches_one_page_after_another():
    server, counter = counting_records(latency_ms=20)
    with server:
        session = session_for(server)
        result = drive(paginate(session, "GET", "/records?n=60&per_page=10", progress=False), no_login)
    assert [r["id"] for r in result.records] == list(range(1, 61))
    assert counter.most == 1
    assert counter.arrivals == ["n=60&per_page=10"] + [f"n=60&page={k}&per_page=10" for k in range(2, 7)]


def test_frame_at_once_is_the_same_dataframe_as_one_by_one():
    with DemoServer(latency_ms=10) as server:
        session = session_for(server)
        at_once = drive(
            paginate(session, "GET", "/records?n=500&per_page=50", frame=True, concurrency=4, progress=False),
            no_login,
        )
        one_by_one = drive(
            paginate(session, "GET", "/records?n=500&per_page=50", frame=True, progress=False), no_login
        )
    assert at_once.concurrency == 4 and one_by_one.concurrency == 1
    assert at_once.df.equals(one_by_one.df)
    assert list(at_once.df["id"]) == list(range(1, 501))


def test_max_pages_stops_the_planned_pages_and_says_so():
    with DemoServer() as server:
        session = session_for(server)
        result = drive(
            paginate(
                session, "GET", "/records?n=100&per_page=10", max_pages=4, concurrency=4, progress=False
            ),
            no_login,
        )
    assert [r["id"] for r in result.records] == list(range(1, 41))
    assert "more pages remain" in result.stopped
    assert "page=5" in result.next_url


def test_concurrency_out_of_range_is_refused(api):
    session = session_for(api)
    for bad in (0, 11):
        with pytest.raises(SessionMagicsError, match="--concurrency must be between 1 and 10"):
            drive(paginate(session, "GET", "/records", concurrency=bad), no_login)


# -- other ways of telling the number of pages ----------------------------------------------

ROWS = 23  # records in every shape below; pages of 5


def _rows(start: int, end: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(start + 1, min(end, ROWS) + 1)]


class Counted(ThreadedServer):
    """Five pages of (at most) five records, in shapes the demo API does not use."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        routes = [Route(f"/{name}", getattr(self, name)) for name in self.NAMES]
        super().__init__(Starlette(routes=routes), name="counted")

    NAMES = ("total_pages", "drf", "meta_total", "x_total", "offset", "zero_based", "grows", "since")

    def _q(self, request: Request, name: str, default: int) -> int:
        self.hits.append(f"{request.url.path}?{request.url.query}")
        return int(request.query_params.get(name, default))

    async def total_pages(self, request: Request) -> Response:
        page = self._q(request, "page", 1)
        return JSONResponse(
            {
                "data": _rows((page - 1) * 5, page * 5),
                "page": page,
                "total_pages": 5,
                "next_page": page + 1 if page < 5 else None,
            }
        )

    async def drf(self, request: Request) -> Response:  # Django REST framework's PageNumberPagination
        page = self._q(request, "page", 1)
        nxt = str(request.url.include_query_params(page=page + 1)) if page < 5 else None
        return JSONResponse(
            {"count": ROWS, "next": nxt, "previous": None, "results": _rows((page - 1) * 5, page * 5)}
        )

    async def meta_total(self, request: Request) -> Response:
        page = self._q(request, "page", 1)
        return JSONResponse(
            {
                "items": _rows((page - 1) * 5, page * 5),
                "meta": {
                    "total": ROWS,
                    "page_size": 5,
                    "next": f"/meta_total?page={page + 1}" if page < 5 else None,
                },
            }
        )

    async def x_total(self, request: Request) -> Response:  # json-server style
        page = self._q(request, "_page", 1)
        headers = {"X-Total-Count": str(ROWS)}
        if page < 5:
            headers["Link"] = f'<{request.url.include_query_params(_page=page + 1)}>; rel="next"'
        return JSONResponse(_rows((page - 1) * 5, page * 5), headers=headers)

    async def offset(self, request: Request) -> Response:  # no link at all: offset, limit, total
        offset = self._q(request, "offset", 0)
        return JSONResponse({"items": _rows(offset, offset + 5), "offset": offset, "limit": 5, "total": ROWS})

    async def zero_based(self, request: Request) -> Response:
        page = self._q(request, "page", 0)
        return JSONResponse(
            {
                "content": _rows(page * 5, page * 5 + 5),
                "totalPages": 5,
                "next": f"/zero_based?page={page + 1}" if page < 4 else None,
            }
        )

    async def since(self, request: Request) -> Response:  # ids with gaps: only the next link knows
        since = self._q(request, "since", 0)
        ids = [i for i in range(1, 100) if i % 3 != 0 and i > since][:5]
        rows = [{"id": i} for i in ids]
        nxt = f"/since?since={ids[-1]}" if ids and ids[-1] < 97 else None
        return JSONResponse({"data": rows, "total": 66, "next": nxt})

    async def grows(self, request: Request) -> Response:  # says 2 pages, has 5: the rest one by one
        page = self._q(request, "page", 1)
        return JSONResponse(
            {
                "data": _rows((page - 1) * 5, page * 5),
                "total_pages": 2,
                "next_page": page + 1 if page < 5 else None,
            }
        )


@pytest.fixture(scope="module")
def counted():
    with Counted() as server:
        yield server


@pytest.mark.parametrize(
    "path", ["/total_pages", "/drf", "/meta_total", "/x_total", "/offset", "/zero_based"]
)
@pytest.mark.parametrize("concurrency", [1, 4])
def test_every_way_of_telling_the_page_count(counted, path, concurrency):
    counted.hits.clear()
    session = ApiSession(Profile(name="n", base_url=counted.url, allow_http=True), MemoryStore())
    result = drive(
        paginate(session, "GET", path, concurrency=concurrency, progress=False, auth=False), no_login
    )
    assert [r["id"] for r in result.records] == list(range(1, ROWS + 1)), counted.hits
    assert result.page_count == 5 and len(counted.hits) == 5 and result.complete
    assert result.concurrency == concurrency


def test_a_total_that_was_too_small_goes_on_one_by_one(counted):
    counted.hits.clear()
    session = ApiSession(Profile(name="n", base_url=counted.url, allow_http=True), MemoryStore())
    result = drive(paginate(session, "GET", "/grows", concurrency=4, progress=False, auth=False), no_login)
    assert [r["id"] for r in result.records] == list(range(1, ROWS + 1))
    assert len(counted.hits) == 5


def test_plan_of_the_demo_api_uses_link_last(api):
    session = session_for(api)
    first = session.request("GET", "/penguins?per_page=100")
    nxt = first.links["next"]["url"]
    plan, why = plan_pages(first, first.url, nxt, first.data["results"], next_expr=None)
    assert why is None and plan.how == 'Link rel="last"'
    assert [u.split("?")[1] for u in plan.urls] == [f"per_page=100&page={k}" for k in (2, 3, 4)]


# -- the summary says why the pages came one by one --------------------------------------


@pytest.fixture
def shell(tmp_path, monkeypatch, kr):
    with demo_shell(tmp_path, monkeypatch) as sh:
        yield sh


@pytest.mark.parametrize(
    ("request_line", "why"),
    [
        ("/penguins/cursor?limit=100", "one page at a time: each page names the next by a cursor"),
        (
            "/penguins/pages?per_page=100",
            "one page at a time: the first page does not say how many pages there are",
        ),
        ("/penguins?per_page=100 --next next", "one page at a time: --next gives each page's address"),
        ("/penguins?per_page=100", "4 at a time"),
        ("/penguins?per_page=100 --concurrency 1", None),
    ],
)
def test_summary_says_how_the_pages_came(api, shell, request_line, why):
    login_demo(shell, api)
    run = shell.run(f"%api GET {request_line} --all")
    assert run.error is None, run.all_text
    assert len(run.result.records) == 344
    summary = run.result.summary()
    if why is None:
        assert "at a time" not in summary
    else:
        assert summary.endswith(why), summary
        assert why in run.result._repr_mimebundle_()[0]["text/plain"]  # what the cell shows


def test_concurrency_setting_is_the_default(api, shell):
    shell.run(f"%login {api.url} --user demo --password-env {DEMO_PASSWORD_ENV}")
    shell.run("%config SessionMagics.concurrency = 2")
    run = shell.run("%api GET /penguins?per_page=50 --all -q -o r")
    assert run.error is None, run.all_text
    assert shell.ip.user_ns["r"].concurrency == 2
    run = shell.run("%api GET /penguins?per_page=50 --all --concurrency 0")
    assert "--concurrency must be between 1 and 10" in run.all_text


# -- renewal and back-off shared by the workers ---------------------------------------------


def test_expiry_mid_run_causes_one_refresh_for_all_workers(kr, shell):
    server = demo_expiring("/records", 3, 301, latency_ms=30)
    with server:
        login_and_run(shell, server, "df = %api GET /records?n=200&per_page=10 --all --df --concurrency 4")
        stats = server.stats()
    assert list(shell.ip.user_ns["df"]["id"]) == list(range(1, 201))
    assert stats["refresh_grants"] == 1 and stats["refresh_failures"] == 0
    assert 1 <= stats["unauthorized"] <= 4  # the pages in flight with the old token
    assert stats["requests_by_path"]["/records"] == 20 + stats["unauthorized"]


def test_a_login_needed_mid_run_is_asked_once_and_every_worker_goes_on():
    server = demo_expiring("/records", 3, 100_000, latency_ms=30)  # both tokens expire
    with server:
        session = session_for(server)
        server.reset_stats()
        asked: list[NeedLogin] = []

        def on_login(need):
            asked.append(need)
            session.login("demo", "penguins")

        result = drive(
            paginate(session, "GET", "/records?n=200&per_page=10", concurrency=4, progress=False), on_login
        )
        stats = server.stats()
    assert [r["id"] for r in result.records] == list(range(1, 201))
    assert [n.reason for n in asked] == ["expired"]
    assert stats["password_grants"] == 1 and stats["refresh_failures"] == 1


def test_a_login_refused_mid_run_stops_every_worker():
    server = demo_expiring("/records", 3, 100_000, latency_ms=30)
    with server:
        session = session_for(server)
        asked: list[NeedLogin] = []

        def on_login(need):
            asked.append(need)
            raise SessionExpired("no login today")

        with pytest.raises(SessionExpired, match="no login today"):
            drive(
                paginate(session, "GET", "/records?n=200&per_page=10", concurrency=4, progress=False),
                on_login,
            )
        assert len(asked) == 1
        assert page_threads_done()


def test_retry_after_holds_back_every_worker():
    server = DemoServer(latency_ms=300)
    limiter = RateLimitOnce(server.app, "/records", 5)  # page 1, then pages 2-5 at once: the last is 429
    server.app = limiter
    with server:
        session = session_for(server)
        result = drive(
            paginate(session, "GET", "/records?n=100&per_page=10", concurrency=4, progress=False), no_login
        )
    assert [r["id"] for r in result.records] == list(range(1, 101))
    assert limiter.limited_at is not None
    after = [t for t, _ in limiter.arrivals if t > limiter.limited_at]
    assert after, "the pages after the 429 were never asked for"
    # Nobody sent anything while Retry-After ran: not the worker that got the 429, and not
    # the three others, whose pages came back meanwhile (they would have sent the next ones).
    assert min(after) >= limiter.limited_at + 1.0
    assert len(limiter.arrivals) == 11  # 10 pages, one of them twice


def test_an_id_to_start_after_is_not_counted_ahead(counted):
    counted.hits.clear()
    session = ApiSession(Profile(name="n", base_url=counted.url, allow_http=True), MemoryStore())
    result = drive(paginate(session, "GET", "/since", concurrency=4, progress=False, auth=False), no_login)
    assert [r["id"] for r in result.records] == [i for i in range(1, 98) if i % 3 != 0]
    assert result.concurrency == 1
    assert result.sequential == "the next page's address is not the next page number"


# -- --max-body over all pages ----------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_max_body_bounds_all_pages_together(concurrency):
    """--max-body bounds each answer, and what --all keeps of all pages together: the walk
    stops (incomplete, saying why and where it would go on) once the pages so far are larger."""
    with DemoServer() as server:
        session = session_for(server)
        one = drive(session.request_flow("GET", "/records?n=200&per_page=10"), no_login)
        page = len(one.content)  # every page of /records is about this size
        result = drive(
            paginate(
                session,
                "GET",
                "/records?n=200&per_page=10",
                progress=False,
                concurrency=concurrency,
                max_body=int(page * 2.5),
            ),
            no_login,
        )
        assert page_threads_done()
    assert result.page_count == 3 and not result.complete
    assert [r["id"] for r in result.records] == list(range(1, 31))
    assert result.stopped is not None and result.stopped.startswith("stopped after 3 pages (--max-body ")
    assert result.stopped.endswith("more pages remain")
    assert result.next_url is not None and "page=4" in result.next_url


def test_a_shared_back_off_ends_its_wait_at_the_request_deadline():
    from session_magics.backoff import SharedBackoff

    backoff = SharedBackoff()
    backoff.hold(3600)  # another worker's Retry-After
    backoff.wait(most=0.01)  # what is left of this request's time
    assert time.monotonic() < backoff._until  # returned before the hold ended
    backoff.cancel()


class HoldPage:
    """ASGI middleware: the request for page ``page`` of ``/records`` gets no answer until
    ``release`` is set (the test sets it when done)."""

    def __init__(self, app, page):
        self.app, self.page = app, page
        self.release = threading.Event()

    async def __call__(self, scope, receive, send):
        import asyncio

        query = scope.get("query_string", b"").decode().split("&")
        if scope["type"] == "http" and scope["path"] == "/records" and f"page={self.page}" in query:
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        await self.app(scope, receive, send)


def test_a_page_fetched_at_once_keeps_its_own_deadline_and_fails_in_one_line():
    """Pages fetched at once go through the same transport: each has the request's deadline,
    and a page that does not answer in time ends the walk with the transport's one line."""
    from session_magics import RequestFailed

    server = DemoServer()
    hold = HoldPage(server.app, 3)
    server.app = hold
    with server:
        session = session_for(server)
        try:
            with pytest.raises(RequestFailed) as caught:
                drive(
                    paginate(
                        session, "GET", "/records?n=100&per_page=10", progress=False, concurrency=4, timeout=1
                    ),
                    no_login,
                )
        finally:
            hold.release.set()
        assert page_threads_done()
    message = str(caught.value)
    assert "page=3" in message and "no complete answer within 1 s" in message, message
    assert "\n" not in message
