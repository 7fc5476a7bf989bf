"""GraphQL in a ``%%api`` cell: the query as the body, the variables as JSON after it.

::

    %%api
    POST /graphql
    X-REQUEST-TYPE: GraphQL               <- optional for a URL with "graphql" in its path

    query Penguins($first: Int, $after: String) {
      penguins(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        edges { node { id species } }
      }
    }

    {"first": {{page_size}}}              <- variables: JSON after a blank line, {{expr}} allowed

A cell is GraphQL when it says so (``X-REQUEST-TYPE: GraphQL`` as in VS Code REST
Client, or the method ``GRAPHQL`` as in JetBrains' HTTP client), or when a POST
with no Content-Type has a body that starts with ``query``, ``mutation`` or
``fragment`` (or with ``{`` and the URL's path names ``graphql``). It is sent as
``{"query": ..., "variables": ...}`` in JSON.

The answer is a :class:`GraphQLResult`: a ``200`` that carries ``errors`` is not
``ok`` and shows the server's messages and paths; ``.data`` is the answer's
``data``, and ``.records`` / ``.df`` the nodes of the connection in it (``edges {
node }`` or ``nodes``) or its first list of objects. ``--all`` follows Relay
pagination (:func:`paginate_graphql`): ``pageInfo { hasNextPage endCursor }``,
the cursor sent back as the variable ``after`` (``--cursor-param`` names another).
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .result import ApiResult

if TYPE_CHECKING:
    from .pagination import PagedResult
    from .session import ApiSession, NeedLogin

DEFAULT_CURSOR_VARIABLE = "after"
_OPERATION = re.compile(r"^\s*(query|mutation|subscription|fragment)\b")
_MAX_DEPTH = 8


@dataclass
class GraphQLRequest:
    """A GraphQL operation: its text and variables (a JSON object)."""

    query: str
    variables: dict[str, Any] = field(default_factory=dict)

    def payload(self, **variables: Any) -> dict[str, Any]:
        merged = {**self.variables, **variables}
        body: dict[str, Any] = {"query": self.query}
        if merged:
            body["variables"] = merged
        return body

    def body(self, **variables: Any) -> bytes:
        return json.dumps(self.payload(**variables)).encode("utf-8")


def looks_like_graphql(body: str, path: str) -> bool:
    """Whether a POST body with no Content-Type is a GraphQL operation."""
    text = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))
    if _OPERATION.match(text) and "{" in text:
        return True
    if text.lstrip().startswith("{") and "graphql" in path.lower():
        try:
            json.loads(text)
        except ValueError:
            return True
    return False


def _balanced(text: str) -> bool:
    """Whether the braces of a query outside its strings and comments are balanced."""
    depth = 0
    in_string = False
    escaped = False
    for line in text.splitlines():
        for ch in line:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "#":
                break
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
    return depth == 0 and not in_string


def split_body(raw: str) -> tuple[str, str | None, int]:
    """The query and the variables' text of a GraphQL body (variables: the JSON object
    after the last blank line at which the query's braces are balanced), and the
    index of the variables' first line."""
    lines = raw.split("\n")
    for k in range(len(lines) - 1, 0, -1):
        if lines[k].strip():
            continue
        rest = "\n".join(lines[k + 1 :]).strip()
        query = "\n".join(lines[:k]).strip()
        if rest.startswith("{") and query and _balanced(query):
            first = next(i for i in range(k + 1, len(lines)) if lines[i].strip())
            return query, rest, first
    return raw.strip(), None, 0


def parse_variables(text: str, line: int) -> dict[str, Any]:
    from .errors import RequestSyntaxError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestSyntaxError(f"the GraphQL variables are not valid JSON ({exc.msg})", line) from None
    if not isinstance(value, dict):
        raise RequestSyntaxError("the GraphQL variables must be a JSON object", line)
    return value


# -- the answer ------------------------------------------------------------------------


def _connection(data: Any) -> dict[str, Any] | None:
    """The first Relay-style connection in ``data`` (breadth first): a dict with
    ``edges`` or ``nodes`` (one with ``pageInfo`` preferred)."""
    level = [data]
    found: dict[str, Any] | None = None
    for _ in range(_MAX_DEPTH):
        following: list[Any] = []
        for item in level:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("edges"), list) or isinstance(item.get("nodes"), list):
                if isinstance(item.get("pageInfo"), dict):
                    return item
                found = found or item
            following.extend(v for v in item.values() if isinstance(v, dict))
        if found is not None or not following:
            return found
        level = following
    return found


def graphql_records(data: Any) -> list[Any] | None:
    """The records of a GraphQL ``data``: the nodes of its connection, else its first
    list of objects (breadth first), else None."""
    conn = _connection(data)
    if conn is not None:
        edges = conn.get("edges")
        if isinstance(edges, list):
            return [e["node"] if isinstance(e, dict) and "node" in e else e for e in edges]
        return list(conn["nodes"])
    level = [data]
    for _ in range(_MAX_DEPTH):
        following: list[Any] = []
        for item in level:
            if isinstance(item, list) and item and all(isinstance(r, dict) for r in item[:50]):
                return item
            if isinstance(item, dict):
                following.extend(v for v in item.values() if isinstance(v, (dict, list)))
        if not following:
            break
        level = following
    return None


def page_info(data: Any) -> dict[str, Any] | None:
    conn = _connection(data)
    info = conn.get("pageInfo") if conn is not None else None
    return info if isinstance(info, dict) else None


def _error_line(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)[:300]
    message = str(error.get("message") or "no message")[:300]
    where = []
    path = error.get("path")
    if isinstance(path, list) and path:
        where.append("path " + ".".join(str(p) for p in path))
    locations = error.get("locations")
    if isinstance(locations, list) and locations and isinstance(locations[0], dict):
        loc = locations[0]
        where.append(f"line {loc.get('line')}:{loc.get('column')}")
    return f"{message} ({', '.join(where)})" if where else message


class GraphQLResult(ApiResult):
    """The answer to a GraphQL operation (see the module's documentation)."""

    @property
    def body(self) -> Any:
        """The whole parsed answer (``data`` and ``errors``)."""
        return super().data

    @property
    def errors(self) -> list[Any]:
        body = self.body
        errors = body.get("errors") if isinstance(body, dict) else None
        return errors if isinstance(errors, list) else []

    @property
    def ok(self) -> bool:
        return self.response.ok and not self.errors

    @property
    def data(self) -> Any:
        body = self.body
        if isinstance(body, dict) and "data" in body:
            return body["data"]
        return body

    @property
    def records(self) -> list[Any] | None:
        data = self.data
        return graphql_records(data) if isinstance(data, (dict, list)) else None

    def error_lines(self) -> list[str]:
        return [_error_line(e) for e in self.errors]

    def problem(self) -> str:
        lines = self.error_lines()
        if not lines:
            return super().problem()
        shown = "; ".join(lines[:5])
        more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
        return f"GraphQL error{'s' if len(lines) > 1 else ''}: {shown}{more}"

    def failure_detail(self) -> str | None:
        """One line for an error message, when the answer carries GraphQL errors."""
        return self.problem() if self.errors else None

    def summary(self) -> str:
        n = len(self.errors)
        return super().summary() + (f" · {n} GraphQL error{'s' if n != 1 else ''}" if n else "")

    def more_pages(self) -> str | None:
        """When the answer's connection says ``hasNextPage``: e.g. "50 of 344 records — use
        --all for every page" (with its ``totalCount``), else "more pages follow — ..."."""
        if not self.ok:
            return None
        try:
            conn = _connection(self.data)
        except Exception:  # a summary line must not fail because of an odd body
            return None
        info = conn.get("pageInfo") if conn is not None else None
        if not isinstance(info, dict) or info.get("hasNextPage") is not True:
            return None
        total = conn.get("totalCount") if conn is not None else None
        got = len(graphql_records(self.data) or ())
        if isinstance(total, int) and not isinstance(total, bool) and total > got > 0:
            return f"{got:,} of {total:,} records — use --all for every page"
        return "more pages follow — use --all for every page"

    def __repr__(self) -> str:
        n = len(self.errors)
        errors = f", {n} GraphQL error{'s' if n != 1 else ''}" if n else ""
        status = f"{self.status_code} {self.reason}{errors}"
        return self.redactor.text(f"<GraphQLResult {self.method} {self.url} → {status}>")

    def _preview_text(self) -> str:
        if not self.errors:
            return super()._preview_text()
        from .render import json_preview
        from .result import MAX_TEXT_CHARS

        text, _ = json_preview(self.body, MAX_TEXT_CHARS)
        return text


def as_graphql(result: ApiResult) -> GraphQLResult:
    answer = GraphQLResult(result.response, method=result.method)
    answer.extra_redacted = result.extra_redacted
    answer.redactor = result.redactor
    return answer


# -- flows ------------------------------------------------------------------------------


def graphql_flow(
    session: ApiSession, graphql: GraphQLRequest, *, method: str, url: str, **request: Any
) -> Generator[NeedLogin, None, GraphQLResult]:
    """The renewal flow of one GraphQL operation."""
    request["body"] = graphql.body()
    result = yield from session.request_flow(method, url, **request)
    return as_graphql(result)


def paginate_graphql(
    session: ApiSession,
    graphql: GraphQLRequest,
    *,
    method: str,
    url: str,
    cursor_param: str = DEFAULT_CURSOR_VARIABLE,
    next_expr: str | None = None,
    max_pages: int = 100,
    progress: bool = True,
    frame: bool = False,
    concurrency: int = 1,
    on_page: Any = None,
    **request: Any,
) -> Generator[NeedLogin, None, PagedResult]:
    """Follow Relay pagination: send the operation again with ``cursor_param`` set to the
    ``endCursor`` of the last page while its ``hasNextPage`` is true (``next_expr``: a
    JMESPath expression giving the next cursor instead). Every page goes through the
    renewal flow; pages come one after another (each names the next)."""
    from .pagination import PROGRESS_AFTER, PageWalk

    walk = PageWalk.begin(
        session,
        method,
        url,
        max_pages=max_pages,
        concurrency=concurrency,
        cursor=("variable", cursor_param),
        frame=frame,
        on_page=on_page,
        progress=progress,
        max_body=request.get("max_body"),
        records_of=graphql_records,
    )
    start_url = walk.start_url
    if concurrency > 1:
        walk.sequential = "each page names the next by a cursor"
    seen: set[str] = set()
    cursor: Any = graphql.variables.get(cursor_param)
    try:
        while True:
            request["body"] = graphql.body(**({cursor_param: cursor} if cursor is not None else {}))
            page = as_graphql((yield from session.request_flow(method, start_url, **request)))
            walk.arrive(page)
            walk.take(page, f"{start_url}#{cursor_param}={cursor}")
            if walk.done:
                break
            n = walk.tally.pages
            if next_expr is not None:
                from .explore import extract

                cursor = extract(page.data, next_expr, option="--next")
            else:
                info = page_info(page.data)
                cursor = info.get("endCursor") if info and info.get("hasNextPage") else None
            if cursor is None or cursor == "" or cursor is False:
                break
            if str(cursor) in seen:
                walk.stop(f"page {n} points back to a page already fetched")
                break
            seen.add(str(cursor))
            if walk.holds_too_much(None):
                break
            if n >= max_pages:
                walk.stop(f"stopped after {max_pages} pages (--max-pages {max_pages}): more pages remain")
                break
            if n == PROGRESS_AFTER:
                walk.start_bar(None)
    finally:
        walk.close()
    return walk.result(method)
