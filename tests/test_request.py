import pytest

from session_magics.errors import RequestSyntaxError
from session_magics.request import parse_request


def refusal(cell, *args, **kwargs) -> RequestSyntaxError:
    """The error ``parse_request(cell, ...)`` raises."""
    with pytest.raises(RequestSyntaxError) as info:
        parse_request(cell, *args, **kwargs)
    return info.value


def ev(ns):
    return lambda expr: eval(expr, {}, ns)


def test_method_url_headers_body():
    spec = parse_request(
        'POST /penguins?x=1 HTTP/1.1\nAccept: application/json\nX-Trace:  abc \n\n{"a": 1}\n',
    )
    assert spec.method == "POST"
    assert spec.url == "/penguins?x=1"
    assert spec.headers == [("Accept", "application/json"), ("X-Trace", "abc")]
    assert spec.body == '{"a": 1}'
    assert spec.json_body


def test_method_is_optional_and_defaults_to_get():
    spec = parse_request("\n\n/penguins\n")
    assert (spec.method, spec.url, spec.headers, spec.body) == ("GET", "/penguins", [], None)


def test_lowercase_method_and_absolute_url():
    spec = parse_request("delete https://example.invalid/a/1")
    assert spec.method == "DELETE" and spec.url == "https://example.invalid/a/1"


def test_comments_and_query_continuation_lines():
    spec = parse_request("# list them\n// more\nGET /penguins\n  ?page=2\n  &per_page=5\n# c\nAccept: */*\n")
    assert spec.url == "/penguins?page=2&per_page=5"
    assert spec.headers == [("Accept", "*/*")]


def test_text_body_is_not_json():
    spec = parse_request("POST /echo\n\nhello\nworld")
    assert spec.body == "hello\nworld"
    assert not spec.json_body


def test_declared_content_type_wins():
    spec = parse_request("POST /echo\nContent-Type: text/plain\n\n{}")
    assert not spec.json_body


def test_interpolation_url_headers_and_json_body():
    ns = {"n": 5, "name": "Adélie", "flags": {"a": True}, "none": None, "tok": "t"}
    spec = parse_request(
        "POST /p/{{n}}?q={{name}}\nX-N: {{ n * 2 }}\n\n"
        '{"n": {{n}}, "name": "{{name}}", "f": {{flags}}, "z": {{none}}}',
        ev(ns),
    )
    assert spec.url == "/p/5?q=Adélie"
    assert spec.headers == [("X-N", "10")]
    assert spec.body == '{"n": 5, "name": "Adélie", "f": {"a": true}, "z": null}'


@pytest.mark.parametrize(
    "cell, line, words",
    [
        ("", 1, "no request"),
        ("   \n# only a comment\n", 1, "no request"),
        ("GET", 1, "needs a URL"),
        ("FETCH /x", 1, "unknown method 'FETCH'"),
        ("GET /a b", 1, "spaces in the URL"),
        ("GET /x\nAccept application/json", 2, "expected a header"),
        ("GET /x\nA: b\nbad header: x", 3, "not a valid header name"),
        ("GET /x\n\n\n{{ 1 +", 4, "closing '}}'"),
        ("GET /{{ 1 + }}", 1, "not a valid Python expression"),
        ("GET /{{ missing }}", 1, "NameError"),
        ("\n\nGET /x\nX-A: {{ }}", 4, "empty {{ }}"),
        ("GET /x\n###\nGET /y", 2, "one request per cell"),
        ("GET /x}}", 1, "without a matching"),
        ("GET /x\nX-A: {{ 'a\\nb' }}", 2, "line break"),
    ],
)
def test_syntax_errors_name_the_line(cell, line, words):
    error = refusal(cell, ev({}))
    assert error.lineno == line
    assert words in str(error)
    assert str(error).startswith(f"line {line}: ")


def test_first_line_offsets_line_numbers():
    error = refusal("GET /x\nnope", first_line=3)
    assert error.lineno == 4


def test_placeholder_without_namespace_is_an_error():
    with pytest.raises(RequestSyntaxError):
        parse_request("GET /{{x}}")


# -- a body that looks like JSON but is not ---------------------------------------------


@pytest.mark.parametrize(
    ("cell", "line", "where"),
    [
        ('POST /echo\n\n{"a": 1,}', 3, "line 1, column 9 of the body"),
        ('POST /echo\nAccept: application/json\n\n[1, 2\n', 4, "line 1, column 6 of the body"),
        ('POST /echo\n\n{\n  "a": 1\n  "b": 2\n}', 5, "line 3, column 3 of the body"),
        ("POST /echo\n\n{'a': 1}", 3, "line 1, column 2 of the body"),
    ],
)
def test_a_body_that_looks_like_json_but_is_not_is_refused_with_where(cell, line, where):
    error = refusal(cell)
    assert error.lineno == line
    message = str(error)
    assert message.startswith(f"line {line}: the body looks like JSON but is not valid JSON: ")
    assert f"({where})" in message and "Content-Type" in message


def test_the_refusal_does_not_quote_the_body():
    error = refusal('POST /echo\n\n{"password": "{{secret}}",}', ev({"secret": "hunter2-secret"}))
    assert "hunter2" not in str(error)


@pytest.mark.parametrize("ctype", ["text/plain", "application/json", "application/x-custom"])
def test_a_content_type_sends_such_a_body_as_it_is(ctype):
    spec = parse_request(f'POST /echo\nContent-Type: {ctype}\n\n{{"a": 1,}}')
    assert spec.body == '{"a": 1,}'
    assert spec.json_body == ("json" in ctype)


def test_valid_json_and_other_text_bodies_are_unchanged():
    assert parse_request('POST /echo\n\n{"a": [1, 2]}').json_body
    assert not parse_request("POST /echo\n\nname=Adélie&n=5").json_body
    assert not parse_request("POST /echo\n\n a {curly} sentence").json_body


def test_with_values_filled_in_the_refusal_names_the_bodys_first_line():
    error = refusal('POST /echo\n\n{"v": {{v}}}', ev({"v": "1,\nx"}))  # a string goes in as it is
    assert error.lineno == 3
    assert "(line 2, column 1 of the body with the {{...}} values in)" in str(error)
