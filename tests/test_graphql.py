"""GraphQL cells against the demo API's GraphQL endpoint (strawberry-graphql) on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from session_magics.errors import RequestSyntaxError
from session_magics.graphql import graphql_records, split_body
from session_magics.request import parse_request
from tests.ipython_helpers import demo_shell, login_and_run, login_demo
from tests.servers import demo_expiring

PAGE_QUERY = """query Penguins($first: Int, $after: String, $species: String) {
  penguins(first: $first, after: $after, species: $species) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id species bodyMassG } }
  }
}"""


@pytest.fixture
def shell(tmp_path, monkeypatch, kr):
    with demo_shell(tmp_path, monkeypatch) as sh:
        yield sh


def graphql_requests(server) -> int:
    return server.stats()["requests_by_path"].get("/graphql", 0)


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        "POST /graphql\nX-REQUEST-TYPE: GraphQL",  # VS Code REST Client
        "GRAPHQL /graphql",  # JetBrains HTTP client
        "POST /graphql",  # a query body on its own says it
        "POST /api\nX-Request-Type: graphql",
    ],
)
def test_a_graphql_cell_becomes_a_json_post_with_query_and_variables(head):
    values = {"n": 5, "kind": "Gentoo"}
    spec = parse_request(
        f'{head}\n\n{PAGE_QUERY}\n\n{{"first": {{{{n}}}}, "species": "{{{{kind}}}}"}}', values.get
    )
    assert spec.method == "POST"
    assert json.loads(spec.body) == {"query": PAGE_QUERY, "variables": {"first": 5, "species": "Gentoo"}}
    assert spec.header("Content-Type") == "application/json"
    assert spec.header("X-REQUEST-TYPE") is None  # a marker, never sent


def test_shorthand_query_without_variables():
    spec = parse_request("POST /graphql\n\n{ penguin(id: 1) { id } }")
    assert json.loads(spec.body) == {"query": "{ penguin(id: 1) { id } }"}


def test_other_bodies_are_left_alone():
    spec = parse_request("POST /echo\n\nquery is a word in this text")
    assert spec.graphql is None and spec.body == "query is a word in this text"
    spec = parse_request('POST /graphql\nContent-Type: application/json\n\n{"query": "{ a }"}')
    assert spec.graphql is None and json.loads(spec.body) == {"query": "{ a }"}


def test_variables_that_are_not_a_json_object_name_their_line():
    with pytest.raises(RequestSyntaxError, match=r"line 6: .*not valid JSON"):
        parse_request("POST /graphql\nX-REQUEST-TYPE: GraphQL\n\nquery { a }\n\n{first: 3}")
    with pytest.raises(RequestSyntaxError, match="needs its query"):
        parse_request("GRAPHQL /graphql")


def test_split_body_keeps_blank_lines_and_braces_inside_the_query():
    query = 'query {\n  a(text: "{ not a brace }")\n\n  b { c }\n}'
    assert split_body(f'{query}\n\n{{"x": 1}}')[:2] == (query, '{"x": 1}')
    assert split_body(query)[:2] == (query, None)


def test_records_are_the_nodes_of_the_connection():
    data = {"viewer": {"repos": {"pageInfo": {}, "edges": [{"node": {"id": 1}}, {"node": {"id": 2}}]}}}
    assert graphql_records(data) == [{"id": 1}, {"id": 2}]
    assert graphql_records({"a": {"nodes": [{"id": 3}]}}) == [{"id": 3}]
    assert graphql_records({"list": [{"id": 4}]}) == [{"id": 4}]
    assert graphql_records({"one": {"id": 5}}) is None


# -- against the demo API ------------------------------------------------------------------


def test_query_with_variables_from_python(api, shell):
    login_demo(shell, api)
    shell.ip.user_ns["n"] = 7
    run = shell.run(
        f'%%api -o r\nPOST /graphql\n\n{PAGE_QUERY}\n\n{{"first": {{{{n}}}}, "species": "Gentoo"}}'
    )
    assert run.error is None, run.all_text
    r = shell.ip.user_ns["r"]
    assert r.ok and r.status_code == 200
    assert r.data["penguins"]["totalCount"] == 124
    assert len(r.records) == 7 and {p["species"] for p in r.records} == {"Gentoo"}
    assert list(r.df.columns) == ["id", "species", "bodyMassG"]


def test_one_page_of_several_says_so_in_its_summary(api, shell):
    """As for REST pages: a single page that announces more must not pass for everything."""
    login_demo(shell, api)
    query = (
        "query($after: String) { penguins(first: 50, after: $after) "
        "{ totalCount pageInfo { hasNextPage endCursor } nodes { id } } }"
    )
    run = shell.run(f"%%api -o r\nGRAPHQL /graphql\n\n{query}")
    assert run.error is None, run.all_text
    first = shell.ip.user_ns["r"]
    assert first.summary().endswith(" · 50 of 344 records — use --all for every page")
    run = shell.run(f"%%api -o r\nGRAPHQL /graphql\n\n{query.replace('totalCount ', '')}")
    assert shell.ip.user_ns["r"].summary().endswith(" · more pages follow — use --all for every page")
    last = first.data["penguins"]["pageInfo"]["endCursor"]
    run = shell.run(  # the last page: nothing more to say
        f'%%api -o r\nGRAPHQL /graphql\n\n{query.replace("first: 50", "first: 400")}\n\n{{"after": "{last}"}}'
    )
    assert run.error is None, run.all_text
    assert shell.ip.user_ns["r"].more_pages() is None and "--all" not in shell.ip.user_ns["r"].summary()
    run = shell.run(f"%%api --all -o r\nGRAPHQL /graphql\n\n{query}")
    assert run.error is None, run.all_text
    assert shell.ip.user_ns["r"].complete and "use --all" not in shell.ip.user_ns["r"].summary()


def test_errors_in_a_200_are_shown_as_an_error(api, shell):
    login_demo(shell, api)
    run = shell.run("%%api -o r\nGRAPHQL /graphql\n\n{ penguin(id: 999) { id } }")
    assert run.error is None, run.all_text
    r = shell.ip.user_ns["r"]
    assert r.status_code == 200 and not r.ok
    assert r.errors[0]["path"] == ["penguin"]
    text = r._repr_mimebundle_()[0]["text/plain"]
    assert "GraphQL error: No penguin with id 999 (path penguin, line 1:3)" in text
    assert "1 GraphQL error" in r.summary()
    html = r._repr_mimebundle_()[0]["text/html"]
    assert "#c62828" in html  # the error colour, not the success one
    run = shell.run("%%api --df\nGRAPHQL /graphql\n\n{ nope }")
    assert run.error is not None
    assert "Cannot query field 'nope' on type 'Query'" in str(run.error)


def test_all_follows_relay_pagination(api, shell):
    login_and_run(
        shell,
        api,
        "%%api --all --df -o df\nPOST /graphql\nX-REQUEST-TYPE: GraphQL\n\n"
        "query($after: String) { penguins(first: 100, after: $after) "
        "{ pageInfo { hasNextPage endCursor } nodes { id species } } }",
    )
    df = shell.ip.user_ns["df"]
    assert list(df["id"]) == list(range(1, 345))
    assert graphql_requests(api) == 4


def test_cursor_param_names_the_variable_and_the_summary_says_why_one_by_one(api, shell):
    login_demo(shell, api)
    run = shell.run(
        "%%api --all --cursor-param cursor -o r\nGRAPHQL /graphql\n\n"
        "query($cursor: String, $first: Int) { penguins(first: $first, after: $cursor) "
        "{ pageInfo { hasNextPage endCursor } edges { node { id } } } }\n\n"
        '{"first": 150}'
    )
    assert run.error is None, run.all_text
    r = shell.ip.user_ns["r"]
    assert [p["id"] for p in r.records] == list(range(1, 345))
    assert r.page_count == 3 and r.complete
    assert r.summary().endswith("one page at a time: each page names the next by a cursor")


def test_an_error_on_a_later_page_stops_and_says_so(api, shell):
    login_demo(shell, api)
    # --next gives a cursor the server refuses: page 2 answers 200 with an error
    run = shell.run(
        "%%api --all --next \"'not-a-cursor'\" -o r\nGRAPHQL /graphql\n\n"
        "query($after: String) { penguins(first: 200, after: $after) { nodes { id } } }"
    )
    assert run.error is None, run.all_text
    r = shell.ip.user_ns["r"]
    assert len(r.records) == 200 and not r.complete
    assert r.stopped.startswith("page 2 answered GraphQL error: The cursor is not valid (path penguins")


def test_session_expiring_mid_all_is_refreshed(kr, shell):
    server = demo_expiring("/graphql", 2, 301)
    with server:
        login_and_run(
            shell,
            server,
            "%%api --all --df -o df\nGRAPHQL /graphql\n\n"
            "query($after: String) { penguins(first: 50, after: $after) "
            "{ pageInfo { hasNextPage endCursor } nodes { id } } }",
        )
        stats = server.stats()
    assert list(shell.ip.user_ns["df"]["id"]) == list(range(1, 345))
    assert stats["unauthorized"] == 1 and stats["refresh_grants"] == 1
    assert stats["requests_by_path"]["/graphql"] == 8  # 7 pages, the third twice


def test_the_endpoint_needs_a_token(api, shell):
    run = shell.run(f"%api POST {api.url}/graphql --no-auth")
    assert run.error is None
    assert run.result.status_code == 401
