"""Parse a ``%%api`` cell: the HTTP-file layout of VS Code REST Client and JetBrains.

::

    # comments start with # or //
    POST /penguins?species=Adelie      <- method (optional, default GET) and URL
    Accept: application/json           <- headers
                                       <- a blank line
    {"name": "{{name}}"}               <- the body (JSON or text)

* Lines right after the request line that start with ``?`` or ``&`` continue the
  query string, as in REST Client.
* ``{{expr}}`` is replaced by the value of a Python expression, evaluated by the
  caller (in the user's namespace). In the URL and headers the value is inserted
  with ``str()``; in a body, strings are inserted as they are and any other value
  (numbers, booleans, None, lists, dicts) as JSON, so ``{"n": {{n}}}`` stays JSON.
* Everything that goes wrong is a :class:`RequestSyntaxError` naming the line.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestSyntaxError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(r"\s+HTTP/\d(\.\d)?$", re.IGNORECASE)
#: A ``{{expression}}`` in a request or a %login line (its inside is group 1).
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

Evaluator = Callable[[str], Any]


@dataclass
class RequestSpec:
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    graphql: Any = None  # a graphql.GraphQLRequest when the cell is a GraphQL operation
    body_is_json: bool | None = field(default=None, repr=False, compare=False)  # known by the parser

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in reversed(self.headers):
            if key.lower() == lname:
                return value
        return None

    @property
    def json_body(self) -> bool:
        """Whether the body is JSON (declared, or undeclared but valid JSON)."""
        if self.body is None:
            return False
        ctype = self.header("Content-Type")
        if ctype is not None:
            return "json" in ctype.lower()
        if self.body_is_json is not None:
            return self.body_is_json
        try:
            json.loads(self.body)
        except ValueError:
            return False
        except RecursionError:  # nested deeper than Python parses: JSON-shaped all the same
            return self.body.lstrip().startswith(("[", "{"))
        return True


def _is_comment(line: str) -> bool:
    s = line.lstrip()
    return s.startswith("#") or s.startswith("//")


def _interpolate(text: str, lineno: int, evaluate: Evaluator | None, *, as_json: bool) -> str:
    if "{{" not in text:
        if "}}" in text and evaluate is not None and not as_json:
            raise RequestSyntaxError("'}}' without a matching '{{'", lineno)
        return text
    if evaluate is None:
        raise RequestSyntaxError("{{...}} needs a namespace to evaluate in", lineno)
    out: list[str] = []
    pos = 0
    line_of_match = lineno  # counted on from the previous match: linear in the text's length
    for match in PLACEHOLDER.finditer(text):
        out.append(text[pos : match.start()])
        expr = match.group(1).strip()
        line_of_match += text.count("\n", pos, match.start())
        if not expr:
            raise RequestSyntaxError("empty {{ }}: put a Python expression inside", line_of_match)
        try:
            value = evaluate(expr)
        except SyntaxError as exc:
            raise RequestSyntaxError(
                f"{{{{{expr}}}}} is not a valid Python expression ({exc.msg})", line_of_match
            ) from None
        except Exception as exc:
            raise RequestSyntaxError(
                f"{{{{{expr}}}}} failed: {type(exc).__name__}: {exc}", line_of_match
            ) from None
        try:
            if as_json and not isinstance(value, str):
                try:
                    out.append(json.dumps(value))
                except (TypeError, ValueError):
                    out.append(str(value))
            else:
                out.append(str(value))
        except Exception as exc:
            raise RequestSyntaxError(
                f"{{{{{expr}}}}} gave a value that cannot be turned into text ({type(exc).__name__})",
                line_of_match,
            ) from None
        line_of_match += text.count("\n", match.start(), match.end())
        pos = match.end()
    rest = text[pos:]
    if "{{" in rest:
        bad = lineno + text.count("\n", 0, pos + rest.index("{{"))
        raise RequestSyntaxError("'{{' without a closing '}}'", bad)
    out.append(rest)
    return "".join(out)


def _lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate (U+D800–U+DFFF) in ``text``, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def interpolate(text: str, evaluate: Evaluator | None) -> str:
    """Replace ``{{expr}}`` in one line of text (e.g. a magic's options)."""
    return _interpolate(text, 1, evaluate, as_json=False)


def parse_request(text: str, evaluate: Evaluator | None = None, *, first_line: int = 1) -> RequestSpec:
    """Parse a request written in the HTTP-file layout.

    ``evaluate`` evaluates the expressions of ``{{expr}}`` placeholders;
    ``first_line`` is the cell line number of ``text``'s first line (for messages).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines) and (not lines[i].strip() or _is_comment(lines[i])):
        i += 1
    if i == len(lines):
        raise RequestSyntaxError("the cell has no request: expected a line such as 'GET /path'", first_line)

    def no(index: int) -> int:
        return first_line + index

    request_line = _VERSION.sub("", lines[i].strip())
    # Placeholders may hold spaces ({{ page + 1 }}): look at the line with them masked.
    masked = PLACEHOLDER.sub(lambda m: "x" * len(m.group(0)), request_line)
    first_space = next((k for k, ch in enumerate(masked) if ch.isspace()), None)
    word = request_line[:first_space] if first_space is not None else request_line
    graphql = word.upper() == "GRAPHQL"  # JetBrains HTTP client: GRAPHQL URL, sent as a POST
    if (word.upper() in METHODS or graphql) and first_space is not None:
        method = "POST" if graphql else word.upper()
        rest_start = first_space + len(masked[first_space:]) - len(masked[first_space:].lstrip())
        target, masked_target = request_line[rest_start:], masked[rest_start:]
    elif word.upper() in METHODS:
        raise RequestSyntaxError(f"{word.upper()} needs a URL or path after it", no(i))
    elif first_space is not None and _TOKEN.match(word) and not word.startswith(("/", "?")):
        raise RequestSyntaxError(
            f"unknown method {word!r}: expected one of {', '.join(METHODS)}, then a path or URL",
            no(i),
        )
    else:
        method, target, masked_target = "GET", request_line, masked
    if any(ch.isspace() for ch in masked_target):
        raise RequestSyntaxError(
            f"expected 'METHOD URL' but found spaces in the URL {target!r} (percent-encode them as %20)",
            no(i),
        )
    url = _interpolate(target, no(i), evaluate, as_json=False)
    i += 1
    while i < len(lines) and lines[i].lstrip().startswith(("?", "&")):
        part = lines[i].strip()
        url += _interpolate(part, no(i), evaluate, as_json=False)
        i += 1
    if not url:
        raise RequestSyntaxError("the URL is empty", no(i - 1))
    bad = next((ch for ch in url if ch.isspace() or not ch.isprintable()), None)
    if bad is not None:
        # e.g. a {{value}} holding a line break: parsers disagree about such URLs.
        raise RequestSyntaxError(
            f"the URL contains {ascii(bad)} (spaces and control characters must be percent-encoded, "
            "e.g. %20)",
            no(i - 1),
        )

    headers: list[tuple[str, str]] = []
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if line.strip().startswith("###"):
            raise RequestSyntaxError("one request per cell: '###' separators are not supported", no(i))
        if _is_comment(line):
            i += 1
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name:
            raise RequestSyntaxError(
                f"expected a header 'Name: value' (or a blank line before the body), got {line.strip()!r}",
                no(i),
            )
        if not _TOKEN.match(name):
            raise RequestSyntaxError(f"{name!r} is not a valid header name", no(i))
        # Surrounding whitespace is no part of a header value (RFC 9110 §5.5), also
        # whitespace that a {{value}} brought in.
        value = _interpolate(value.strip(), no(i), evaluate, as_json=False).strip()
        if "\n" in value or "\r" in value:
            raise RequestSyntaxError(f"the value of header {name!r} contains a line break", no(i))
        if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in value):
            raise RequestSyntaxError(f"the value of header {name!r} contains a control character", no(i))
        if any(ord(ch) > 255 for ch in value):
            raise RequestSyntaxError(
                f"the value of header {name!r} has characters HTTP headers cannot carry "
                "(only Latin-1): percent-encode or base64-encode it",
                no(i),
            )
        headers.append((name, value))
        i += 1

    # VS Code REST Client: X-REQUEST-TYPE: GraphQL marks a GraphQL request (not sent).
    marked = [h for h in headers if h[0].lower() == "x-request-type" and h[1].lower() == "graphql"]
    if marked:
        graphql = True
        headers = [h for h in headers if h not in marked]

    body: str | None = None
    spec = RequestSpec(method=method, url=url, headers=headers)
    if i < len(lines):
        start = i + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        raw = "\n".join(lines[start:]).rstrip("\n")
        if raw.strip() and not graphql and method == "POST" and spec.header("Content-Type") is None:
            from urllib.parse import urlsplit

            from .graphql import looks_like_graphql

            graphql = looks_like_graphql(raw, urlsplit(url).path)
        if graphql and raw.strip():
            _graphql_body(spec, raw, no(start), evaluate)
            return spec
        if raw.strip():
            body = _interpolate(raw, no(start), evaluate, as_json=True)
            bad_at = _lone_surrogate(body)
            if bad_at is not None:
                bad_line = no(start) + body.count("\n", 0, bad_at)
                raise RequestSyntaxError(
                    f"the body contains a lone surrogate ({ascii(body[bad_at])[1:-1]}), which UTF-8 "
                    "cannot encode",
                    bad_line,
                )
    if graphql:
        raise RequestSyntaxError("a GraphQL request needs its query as the body", no(i))
    spec.body = body
    if body is not None and spec.header("Content-Type") is None and body.lstrip()[:1] in ("{", "["):
        spec.body_is_json = _check_json_body(body, no(start), filled="{{" in raw)
    return spec


def _graphql_body(spec: RequestSpec, raw: str, lineno: int, evaluate: Evaluator | None) -> None:
    """Make ``spec`` a GraphQL POST: the query, then the variables (JSON after a blank
    line, ``{{expr}}`` as in any JSON body), sent as ``{"query", "variables"}``."""
    from .graphql import GraphQLRequest, parse_variables, split_body

    query, variables_text, offset = split_body(raw)
    variables: dict[str, Any] = {}
    if variables_text is not None:
        text = _interpolate(variables_text, lineno + offset, evaluate, as_json=True)
        variables = parse_variables(text, lineno + offset)
    spec.method = "POST"
    spec.graphql = GraphQLRequest(query, variables)
    spec.body = json.dumps(spec.graphql.payload())
    if spec.header("Content-Type") is None:
        spec.headers.append(("Content-Type", "application/json"))


def _check_json_body(body: str, first_line: int, *, filled: bool = False) -> bool:
    """A body that looks like JSON (it starts with ``{`` or ``[``) and has no Content-Type
    must be JSON: sent as text it would reach the server as a puzzle (a 400 or 415 at
    best), so it is refused with the parse error and where it is. A Content-Type line
    in the cell sends the body as it is. The message names positions only, never the
    body's text (it may hold an inserted secret)."""
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        # With {{...}} filled in, the body's lines need not be the cell's lines (a value
        # may hold line breaks): the error then names the body's first line.
        after = " with the {{...}} values in" if filled else ""
        raise RequestSyntaxError(
            f"the body looks like JSON but is not valid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno} of the body{after}). Fix it, or add a "
            "Content-Type header (e.g. Content-Type: text/plain) to send it as it is",
            first_line if filled else first_line + exc.lineno - 1,
        ) from None
    except RecursionError:  # nested too deeply to check here: sent as JSON, the server decides
        return True
    return True
