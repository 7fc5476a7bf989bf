"""Bad input: the cell parser and {{...}} fuzzed with hypothesis; %login with bad URLs,
unknown profiles and login endpoints that answer the unexpected."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.utils import check_header_validity

from session_magics import LoginError, ProfileError, RequestSyntaxError
from session_magics.profile import Profile, url_problem
from session_magics.request import METHODS, RequestSpec, parse_request
from tests.security.helpers import PASSWORD_ENV, assert_short_error, login, shown

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

FRAGMENTS = [
    "GET", "POST", "delete", "OPTIONS", " ", "  ", "\t", "\n", "\r\n", "\r", "/", "/x", "?a=1", "&b=2",
    "http://", "https://", "127.0.0.1:1", "@", "\\", "#", "//", "HTTP/1.1", ":", "Accept", "X-K",
    "{{", "}}", "{{v}}", "{{ n }}", "{{bad}}", "{{nl}}", "{{ctl}}", "{{uni}}", "{{obj}}", "{{lst}}",
    "{}", '{"a": 1}', "[", "###", "# c", "// c", "\x00", "\x0b", "\x1f", "\x7f", "\u2028", "€",
    "é", "ı", "\ufeff",
]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


NAMESPACE = {
    "v": "value",
    "n": 7,
    "nl": "a\nb",
    "ctl": "x\x00y",
    "uni": "€uro",
    "obj": Unprintable(),
    "lst": [1, {"k": None}],
}


def evaluate(expr: str):
    """What the magics do (evaluate in the user's namespace), without running arbitrary code."""
    if not expr.isidentifier():
        raise SyntaxError("invalid syntax")
    try:
        return NAMESPACE[expr]
    except KeyError:
        raise NameError(f"name {expr!r} is not defined") from None


cells = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join),
)


def assert_valid(spec: RequestSpec) -> None:
    assert spec.method in METHODS
    assert spec.url and not any(ch.isspace() or not ch.isprintable() for ch in spec.url), spec.url
    for name, value in spec.headers:
        assert HEADER_NAME.match(name), name
        assert all(ord(ch) <= 255 for ch in value), value
        check_header_validity((name, value))  # what requests would refuse at send time
    assert spec.body is None or isinstance(spec.body, str)


@FUZZ
@given(cells)
def test_parser_gives_a_valid_spec_or_a_syntax_error_with_a_line(text):
    for evaluator in (None, evaluate):
        try:
            spec = parse_request(text, evaluator)
        except RequestSyntaxError as exc:
            assert exc.lineno is not None and 1 <= exc.lineno <= text.count("\n") + text.count("\r") + 1
            assert "\n" not in str(exc) or "\n" in exc.reason
            continue
        assert_valid(spec)


TRICKY = st.text(alphabet=st.sampled_from(" \t\n\r\x00\x0b\x7fab€é{}:/@?#%\\."), max_size=8)
VALUES = st.one_of(
    TRICKY, st.text(max_size=40), st.integers(), st.none(), st.lists(st.integers(), max_size=3)
)


@pytest.mark.parametrize("where", ["url", "header", "body", "query"])
@FUZZ
@given(value=VALUES)
def test_interpolated_values_cannot_break_the_request(value, where):
    cell = {
        "url": "GET /x/{{value}}",
        "header": "GET /x\nX-Value: {{value}}",
        "body": 'POST /x\n\n{"v": {{value}}}',
        "query": "GET /x\n  ?q={{value}}",
    }[where]
    try:
        spec = parse_request(cell, lambda expr: {"value": value}[expr])
    except RequestSyntaxError as exc:
        assert exc.lineno in (1, 2, 3)
        return
    assert_valid(spec)
    profile = Profile(name="p", base_url="http://127.0.0.1:1/api")
    full = profile.url(spec.url)
    assert url_problem(full) is None
    assert profile.owns(full)  # a value inside a relative path never leaves the origin


@FUZZ
@given(st.text(max_size=60))
def test_url_problem_and_origin_never_crash(text):
    profile = Profile(name="p", base_url="https://api.example.com/v1")
    problem = url_problem(text)
    assert problem is None or isinstance(problem, str)
    owned = profile.owns(text)
    if owned:
        assert problem is None or "user name" in problem


# -------------------------------------------------------------------- %login
@pytest.mark.parametrize(
    "url, words",
    [
        ("htp://x.example", ["only http"]),
        ("api.example.com", ["not an absolute URL"]),
        ("http://[::1", ["not a valid URL"]),
        ("https://exa mple.com", ["not a valid URL"]),
        ("https://example.com:99999", ["not a valid URL"]),
        ("https://", ["not a valid URL"]),
        ("https://u:pw@example.com", ["user name or password"]),
        ("https://example.com/?q=1", ["no query string"]),
        ("https://a\\@example.com/", ["user name or password"]),
        ("https://@example.com/", ["user name or password"]),
    ],
)
def test_login_with_a_malformed_url(kr, new_shell, recorder, url, words):
    shell = new_shell()
    run = shell.run(f"%login {url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, ProfileError, *words)
    assert "pw" not in shown(run).replace("password", "")
    assert recorder.requests() == []


def test_unknown_profile(api, kr, new_shell):
    shell = new_shell()
    login(shell, api)
    for cell in ("%api --profile nope GET /me", "%logout --profile nope"):
        run = shell.run(cell)
        assert_short_error(run, ProfileError, "unknown profile 'nope'", api.url)


def test_login_endpoint_answering_html(odd, kr, new_shell):
    shell = new_shell()
    run = shell.run(f"%login {odd.url} --user demo --password-env {PASSWORD_ENV} --login /html")
    assert_short_error(run, LoginError, "text/html", "--login")


def test_login_endpoint_answering_200_without_a_token(kr, new_shell, recorder):
    shell = new_shell()
    run = shell.run(f"%login {recorder.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, LoginError, "holds no token", "fields present: ok", "--access-field")


def test_login_with_the_wrong_password(api, kr, new_shell, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    shell = new_shell()
    run = shell.run(f"%login {api.url} --user demo --password-env {PASSWORD_ENV}")
    assert_short_error(run, LoginError, "400", "Wrong username or password")
    assert "not-the-password" not in shown(run)
