"""%%api --all, --df and --extract against the demo API (and a second local server
that answers with other pagination shapes), all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from session_magics import SessionMagicsError
from session_magics.demo import DemoServer, ThreadedServer
from session_magics.explore import ExtractError, extract, frame_of
from session_magics.pagination import PagedResult, next_page, paginate, with_query
from session_magics.profile import Profile
from session_magics.session import ApiSession, NeedLogin, drive
from session_magics.steps import drive_async
from session_magics.store import MemoryStore
from tests.ipython_helpers import demo_shell, login_and_run, login_demo
from tests.servers import demo_expiring

# -- a second server: pagination shapes the demo API does not use ------------------


def _rows(page: int, n: int = 3) -> list[dict[str, int]]:
    return [{"id": (page - 1) * n + i, "page": page} for i in range(1, n + 1)]


class Shapes(ThreadedServer):
    """Three pages of three records in many shapes; ``other`` is a second origin."""

    def __init__(self) -> None:
        self.other = ""
        self.hits: list[str] = []
        routes = [Route(f"/{name}", getattr(self, name)) for name in self.NAMES]
        super().__init__(Starlette(routes=routes), name="shapes")

    NAMES = (
        "next_page",
        "relative",
        "hal",
        "has_more",
        "after",
        "custom",
        "loop",
        "elsewhere",
        "fail",
        "empty",
        "nolist",
        "text",
    )

    def _page(self, request: Request, key: str = "page") -> int:
        self.hits.append(f"{request.url.path}?{request.url.query}")
        return int(request.query_params.get(key, "1"))

    async def next_page(self, request: Request) -> Response:
        page = self._page(request)
        return JSONResponse({"items": _rows(page), "next_page": page + 1 if page < 3 else None})

    async def relative(self, request: Request) -> Response:
        page = self._page(request)
        return JSONResponse({"data": _rows(page), "next": f"?page={page + 1}" if page < 3 else None})

    async def hal(self, request: Request) -> Response:
        page = self._page(request)
        links = {"self": {"href": f"/hal?page={page}"}}
        if page < 3:
            links["next"] = {"href": f"/hal?page={page + 1}"}
        return JSONResponse({"items": _rows(page), "_links": links})

    async def has_more(self, request: Request) -> Response:
        page = self._page(request, "cursor")
        # The last page still carries a cursor: has_more=false must win.
        return JSONResponse({"data": _rows(page), "has_more": page < 3, "next_cursor": str(page + 1)})

    async def after(self, request: Request) -> Response:
        page = self._page(request, "after")
        cursor = str(page + 1) if page < 3 else None
        return JSONResponse({"records": _rows(page), "meta": {"next_cursor": cursor}})

    async def custom(self, request: Request) -> Response:
        page = self._page(request, "p")
        following = f"/custom?p={page + 1}" if page < 3 else None
        return JSONResponse({"rows": _rows(page), "paging_info": {"following": following}})

    async def loop(self, request: Request) -> Response:
        self._page(request)
        return JSONResponse({"items": _rows(1), "next": "/loop"})

    async def elsewhere(self, request: Request) -> Response:
        self._page(request)
        return JSONResponse({"items": _rows(1), "next": f"{self.other}/collect?page=2"})

    async def fail(self, request: Request) -> Response:
        page = self._page(request)
        if page == 3:
            return JSONResponse({"error": "the database is on fire"}, status_code=500)
        return JSONResponse({"items": _rows(page), "next": f"/fail?page={page + 1}"})

    async def empty(self, request: Request) -> Response:
        page = self._page(request)
        rows = _rows(page) if page < 3 else []
        return JSONResponse({"items": rows, "next": f"/empty?page={page + 1}"})

    async def nolist(self, request: Request) -> Response:
        page = self._page(request)
        return JSONResponse({"value": page, "next": f"/nolist?page={page + 1}" if page < 2 else None})

    async def text(self, request: Request) -> Response:
        self._page(request)
        return Response("plain text", media_type="text/plain")


@pytest.fixture(scope="module")
def shapes():
    with Shapes() as server, DemoServer(log_level="warning") as other:
        server.other = other.url
        yield server


@pytest.fixture
def hits(shapes):
    shapes.hits.clear()
    return shapes.hits


# -- the demo API, a keyring and IPython ---------------------------------------------


@pytest.fixture
def shell(tmp_path, monkeypatch, kr):
    with demo_shell(tmp_path, monkeypatch) as sh:
        yield sh


def session_for(api) -> ApiSession:
    session = ApiSession(Profile(name="t", base_url=api.url, user="demo"), MemoryStore())
    session.login("demo", "penguins")
    return session


def requests_to(api, path):
    return api.stats()["requests_by_path"].get(path, 0)


# -- following pages -----------------------------------------------------------------


def test_all_follows_link_header_and_combines_every_page(api, shell):
    run = login_and_run(shell, api, "%%api --all -o pages\nGET /penguins?per_page=50")
    result = run.result
    assert isinstance(result, PagedResult)
    assert shell.ip.user_ns["pages"] is result
    assert len(result.pages) == 7 and all(isinstance(p.status_code, int) for p in result.pages)
    assert [r["id"] for r in result.records] == list(range(1, 345))
    assert result.data is result.records
    assert result.status_code == 200 and result.complete and result.stopped is None
    assert requests_to(api, "/penguins") == 7
    assert "7 pages" in result.summary() and "344 records" in result.summary()


def test_all_follows_links_next_in_the_body(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /penguins/pages?per_page=100 --all")
    assert run.error is None, run.all_text
    assert len(run.result.pages) == 4
    assert len(run.result.records) == 344
    assert run.result.pages[0].links == {}  # no Link header: the body's links.next was used


def test_all_sends_meta_next_cursor_back_as_cursor_parameter(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /penguins/cursor?limit=100 --all")
    assert run.error is None, run.all_text
    pages = run.result.pages
    assert len(pages) == 4
    assert "cursor=" not in pages[0].url
    assert all("cursor=" in p.url and "limit=100" in p.url for p in pages[1:])
    assert [r["id"] for r in run.result.records] == list(range(1, 345))


@pytest.mark.parametrize(
    ("path", "option"),
    [
        ("/next_page", ""),  # a page number
        ("/relative", ""),  # "?page=2", relative to the page's URL
        ("/hal", ""),  # _links.next.href
        ("/has_more?cursor=1", ""),  # has_more: false ends it, whatever the cursor says
        ("/after", "--cursor-param after"),
        ("/custom", "--next paging_info.following"),
    ],
)
def test_other_pagination_shapes(shapes, hits, shell, path, option):
    run = shell.run(f"%api GET {shapes.url}{path} --all {option}")
    assert run.error is None, run.all_text
    assert [r["id"] for r in run.result.records] == list(range(1, 10)), hits
    assert len(run.result.pages) == 3
    assert len(hits) == 3  # no extra request after the last page


def test_cursor_parameter_comes_from_the_setting(shapes, hits, shell):
    run = shell.run("%config SessionMagics.cursor_param = 'after'")
    assert run.error is None
    run = shell.run(f"%api GET {shapes.url}/after --all")
    assert run.error is None, run.all_text
    assert hits == ["/after?", "/after?after=2", "/after?after=3"]


def test_max_pages_stops_early_and_says_so(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /records?n=1000&per_page=10 --all --max-pages 5")
    assert run.error is None, run.all_text
    result = run.result
    assert len(result.pages) == 5 and len(result.records) == 50
    assert not result.complete
    assert "stopped after 5 pages" in result.stopped and "more pages remain" in result.stopped
    assert "page=6" in result.next_url
    assert "Warning: stopped after 5 pages (--max-pages 5)" in run.stderr
    bundle, _ = result._repr_mimebundle_()
    assert "Incomplete: stopped after 5 pages" in bundle["text/plain"]
    assert "Incomplete" in bundle["text/html"]


def test_max_pages_default_is_the_setting(api, shell):
    login_demo(shell, api)
    shell.run("%config SessionMagics.max_pages = 3")
    run = shell.run("%api GET /records?n=1000&per_page=10 --all -q -o r")
    assert run.error is None, run.all_text
    assert len(shell.ip.user_ns["r"].pages) == 3
    assert "Warning: stopped after 3 pages" in run.stderr  # said even with -q


def test_a_failing_page_stops_with_its_status_and_keeps_the_rest(shapes, hits, shell):
    run = shell.run(f"%api GET {shapes.url}/fail --all")
    assert run.error is None, run.all_text
    result = run.result
    assert result.status_code == 500 and not result.ok
    assert len(result.pages) == 3 and len(result.records) == 6
    assert "page 3 answered 500" in result.stopped
    assert "the database is on fire" in result._repr_mimebundle_()[0]["text/plain"]


def test_next_page_on_another_origin_is_not_followed(shapes, hits, shell):
    run = shell.run(f"%api GET {shapes.url}/elsewhere --all")
    assert run.error is None, run.all_text
    assert len(run.result.pages) == 1
    assert "another origin" in run.result.stopped
    assert run.result.next_url.startswith(shapes.other)


def test_a_next_link_to_a_page_already_fetched_ends_the_loop(shapes, hits, shell):
    run = shell.run(f"%api GET {shapes.url}/loop --all --max-pages 50")
    assert run.error is None, run.all_text
    assert len(hits) == 1
    assert "already fetched" in run.result.stopped


def test_an_empty_page_ends_it_and_pages_without_a_list_are_items(shapes, hits, shell):
    run = shell.run(f"%api GET {shapes.url}/empty --all")
    assert len(run.result.pages) == 3 and len(run.result.records) == 6
    assert run.result.complete
    run = shell.run(f"%api GET {shapes.url}/nolist --all")
    assert [item["value"] for item in run.result.records] == [1, 2]


def test_progress_bar_only_for_more_than_two_pages_and_never_with_q(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /penguins?per_page=50 --all")
    assert "GET /penguins" in run.stderr and "page" in run.stderr  # tqdm's text bar
    run = shell.run("%api GET /penguins?per_page=50 --all -q")
    assert run.stderr == ""
    assert run.displayed == [] and run.result is None
    run = shell.run("%api GET /penguins?per_page=200 --all")  # two pages
    assert run.error is None and len(run.result.pages) == 2
    assert run.stderr == ""


def test_display_of_many_records_is_bounded(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /records?n=20000&per_page=10000 --all")
    assert run.error is None, run.all_text
    bundle, metadata = run.result._repr_mimebundle_()
    size = len(json.dumps(bundle)) + len(json.dumps(metadata))
    assert size < 60_000, size
    assert "20,000 records, first 20 shown" in bundle["text/html"]


# -- the renewal flow on every page --------------------------------------------------


def test_session_expiring_mid_pagination_is_refreshed_through_the_magic(kr, shell):
    server = demo_expiring("/records", 3, 301)
    with server:
        login_and_run(shell, server, "df = %api GET /records?n=100&per_page=10 --all --df --concurrency 1")
        stats = server.stats()
    assert len(shell.ip.user_ns["df"]) == 100
    assert list(shell.ip.user_ns["df"]["id"]) == list(range(1, 101))
    assert stats["unauthorized"] == 1 and stats["refresh_grants"] == 1
    assert stats["requests_by_path"]["/records"] == 11  # 10 pages, page 4 twice


def test_paginate_yields_need_login_mid_pagination_and_goes_on(api):
    session = session_for(api)
    api.reset_stats()
    asked: list[NeedLogin] = []

    def on_page(page):
        if len(pages_seen) == 1:
            api.advance_clock(100_000)  # access and refresh token both expire
        pages_seen.append(page)

    def on_login(need):
        asked.append(need)
        session.login("demo", "penguins")

    pages_seen: list = []
    flow = paginate(session, "GET", "/records?n=50&per_page=10", on_page=on_page, progress=False)
    result = drive(flow, on_login)
    assert [r["id"] for r in result.records] == list(range(1, 51))
    assert len(asked) == 1 and asked[0].reason == "expired"
    stats = api.stats()
    assert stats["password_grants"] == 1 and stats["refresh_failures"] == 1  # the login asked for


def test_paginate_composes_with_the_async_driver(api):
    session = session_for(api)
    session.forget()  # not logged in: the first page asks
    asked: list[NeedLogin] = []

    async def on_login(need):
        await asyncio.sleep(0)
        asked.append(need)
        session.login("demo", "penguins")

    flow = paginate(session, "GET", "/penguins?per_page=100", progress=False)
    result = asyncio.run(drive_async(flow, on_login))
    assert len(result.records) == 344 and len(result.pages) == 4
    assert [n.reason for n in asked] == ["not logged in"]


def test_max_pages_below_one_is_refused(api):
    session = session_for(api)
    with pytest.raises(SessionMagicsError, match="at least 1"):
        drive(paginate(session, "GET", "/penguins", max_pages=0), lambda need: None)


def test_with_query_replaces_a_parameter_and_keeps_the_others():
    assert with_query("http://h/p?a=1&cursor=x&b=2", "cursor", "y") == "http://h/p?a=1&b=2&cursor=y"


def test_next_page_prefers_the_link_header(api):
    session = session_for(api)
    first = session.request("GET", "/penguins?per_page=10&page=3")
    nxt = next_page(first, first.url)
    assert nxt is not None and "page=4" in nxt and "per_page=10" in nxt


# -- --df and --extract --------------------------------------------------------------


def test_line_form_assignment_with_all_and_df(api, shell):
    login_demo(shell, api)
    run = shell.run("penguins = %api GET /penguins?per_page=100 --all --df")
    assert run.error is None, run.all_text
    df = shell.ip.user_ns["penguins"]
    assert isinstance(df, pd.DataFrame)
    assert df.shape[0] == 344 and {"species", "island", "body_mass_g"} <= set(df.columns)
    assert sorted(df["species"].unique()) == ["Adelie", "Chinstrap", "Gentoo"]
    # one summary line is shown above the value
    assert any("4 pages · 344 records" in d.get("text/plain", "") for d in run.displayed)


def test_line_form_all_without_df_returns_the_paged_result(api, shell):
    login_demo(shell, api)
    run = shell.run("r = %api GET /penguins?per_page=100 --all")
    assert run.error is None, run.all_text
    assert isinstance(shell.ip.user_ns["r"], PagedResult)
    assert shell.ip.user_ns["r"].df.shape == (344, 9)


def test_cell_df_without_all_finds_the_records_in_the_wrapper(api, shell):
    login_demo(shell, api)
    run = shell.run("%%api --df -o small\nGET /penguins?per_page=5")
    assert run.error is None, run.all_text
    assert isinstance(run.result, pd.DataFrame) and list(run.result["id"]) == [1, 2, 3, 4, 5]
    assert shell.ip.user_ns["small"] is run.result


def test_df_of_a_single_object_is_one_row(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /me --df")
    assert run.error is None, run.all_text
    assert run.result.shape[0] == 1 and run.result["username"][0] == "demo"


def test_df_flattens_nested_objects_like_json_normalize():
    records = [{"id": 1, "a": {"b": 2, "c": {"d": 3}}}, {"id": 2, "a": {"b": 5}}]
    df = frame_of(records)
    assert list(df.columns) == ["id", "a.b", "a.c.d"]
    pd.testing.assert_frame_equal(df, pd.json_normalize(records))
    flat = [{"id": i, "name": f"n{i}", "x": None if i % 2 else 1.5} for i in range(50)]
    pd.testing.assert_frame_equal(frame_of(flat), pd.json_normalize(flat))


def test_extract_picks_with_jmespath(api, shell):
    login_demo(shell, api)
    run = shell.run("""%api GET /penguins?per_page=200 --extract "results[?species=='Gentoo'].id" """)
    assert run.error is None, run.all_text
    assert run.result == list(range(153, 201))  # Gentoos among the first 200 penguins
    run = shell.run("""n = %api GET /penguins --all --extract "[?species=='Chinstrap'] | length(@)" """)
    assert run.error is None, run.all_text
    assert shell.ip.user_ns["n"] == 68  # all 344 penguins: 68 Chinstraps


def test_extract_and_df_together(api, shell):
    login_demo(shell, api)
    run = shell.run("""%%api --all --df --extract "[?island=='Dream'].{id: id, mass: body_mass_g}"
GET /penguins?per_page=100""")
    assert run.error is None, run.all_text
    assert list(run.result.columns) == ["id", "mass"] and len(run.result) == 124


def test_extract_errors_are_one_line(api, shell):
    login_demo(shell, api)
    run = shell.run('%api GET /penguins --extract "results[?"')
    assert isinstance(run.error, ExtractError)
    assert "not valid JMESPath" in str(run.error) and "\n" not in str(run.error)
    run = shell.run('%api GET /penguins --extract "abs(results)"')
    assert isinstance(run.error, ExtractError) and "\n" not in str(run.error)
    assert "Traceback" not in run.stdout + run.stderr
    run = shell.run("%api GET /text --extract a")
    assert isinstance(run.error, ExtractError) and "not JSON" in str(run.error)


def test_extract_that_matches_nothing_says_so(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /penguins --extract nothing_here")
    assert run.error is None and run.result is None
    assert "matched nothing" in run.stderr


def test_df_of_a_failed_answer_is_an_error_naming_the_status(api, shell):
    login_demo(shell, api)
    run = shell.run("%api GET /status/404 --df")
    assert isinstance(run.error, SessionMagicsError)
    assert "404" in str(run.error) and "--df" in str(run.error)


def test_extract_function_directly():
    data = {"results": [{"a": 1}, {"a": 2}]}
    assert extract(data, "results[].a") == [1, 2]
    with pytest.raises(ExtractError):
        extract(data, "")


# -- one page of several, shown without --all ------------------------------------------


def _summary_of(run) -> str:
    """The summary line a cell showed (the first line of its first text display)."""
    return run.displayed[0]["text/plain"].splitlines()[0]


@pytest.mark.parametrize(
    ("request_line", "hint"),
    [
        ("GET /penguins?per_page=200", "page 1 of 2 — use --all for every page"),
        ("GET /penguins?per_page=100&page=2", "page 2 of 4 — use --all for every page"),
        ("GET /penguins/pages?per_page=100", "page 1, more pages follow — use --all for every page"),
        ("GET /penguins/cursor?limit=100", "page 1 of 4 — use --all for every page"),
    ],
)
def test_a_page_of_several_says_so_in_its_summary_line(api, shell, request_line, hint):
    login_demo(shell, api)
    run = shell.run(f"%%api\n{request_line}")
    assert run.error is None, run.all_text
    assert _summary_of(run).endswith(f" · {hint}"), _summary_of(run)
    assert hint in run.displayed[0]["text/html"]


def test_a_page_reached_by_a_cursor_does_not_guess_its_number(api, shell):
    login_demo(shell, api)
    first = shell.run("r = %api GET /penguins/cursor?limit=100")
    assert first.error is None, first.all_text
    cursor = shell.ip.user_ns["r"].data["meta"]["next_cursor"]
    run = shell.run(f"%%api\nGET /penguins/cursor?limit=100&cursor={cursor}")
    assert _summary_of(run).endswith(" · more pages follow — use --all for every page"), _summary_of(run)


@pytest.mark.parametrize(
    "request_line",
    ["GET /penguins?per_page=200&page=2", "GET /penguins?per_page=400", "GET /me", "GET /penguins --all"],
)
def test_the_last_or_only_page_and_all_pages_have_no_hint(api, shell, request_line):
    login_demo(shell, api)
    run = shell.run(f"%api {request_line}")
    assert run.error is None, run.all_text
    assert all("--all for every page" not in str(d) for d in run.displayed), run.displayed


def test_a_page_of_several_as_a_dataframe_says_so_above_it(api, shell):
    login_demo(shell, api)
    run = shell.run("df = %api GET /penguins?per_page=200 --df")
    assert run.error is None, run.all_text
    assert shell.ip.user_ns["df"].shape[0] == 200
    assert "page 1 of 2 — use --all for every page" in run.displayed[0]["text/plain"]


# -- summary lines look the same whatever the body -----------------------------------


def _summary_div(html_text: str) -> str:
    """The opening tag of the summary line's HTML (its look)."""
    head = html_text.split(">", 1)[0] + ">"
    assert head.startswith("<div "), html_text[:200]
    return head


def test_summary_lines_look_the_same_for_json_tables_text_and_dataframes(api, shell):
    login_demo(shell, api)
    # every value comes below a summary line of its own
    json_tree = shell.run("%%api\nGET /me")  # a JSON tree
    assert "application/json" in json_tree.displayed[-1]
    table = shell.run("%%api\nGET /penguins?per_page=5")  # a table
    frame = shell.run("%api GET /penguins?per_page=5 --df")  # a DataFrame
    text = shell.run("%%api\nGET /text")  # plain text
    assert "penguin colony" in text.displayed[-1]["text/html"]
    looks = {
        "json": _summary_div(json_tree.displayed[0]["text/html"]),
        "table": _summary_div(table.displayed[0]["text/html"]),
        "dataframe": _summary_div(frame.displayed[0]["text/html"]),
        "text": _summary_div(text.displayed[0]["text/html"]),
    }
    assert len(set(looks.values())) == 1, looks
    failed = shell.run("%%api\nGET /status/404")
    assert failed.error is None, failed.all_text
    failed_look = _summary_div(failed.displayed[0]["text/html"])
    assert failed_look != looks["json"] and "font-family:monospace" in failed_look  # red, same font
