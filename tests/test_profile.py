import pytest

from session_magics.errors import ProfileError
from session_magics.profile import Profile, format_origin, origin_of


@pytest.mark.parametrize(
    "url, origin",
    [
        ("https://API.example.com/v1", ("https", "api.example.com", 443)),
        ("https://api.example.com:443/", ("https", "api.example.com", 443)),
        ("http://127.0.0.1:8765/x", ("http", "127.0.0.1", 8765)),
        ("http://[::1]:80/", ("http", "::1", 80)),
        ("ftp://example.com/", None),
        ("/relative", None),
        ("http://host:notaport/", None),
    ],
)
def test_origin_of(url, origin):
    assert origin_of(url) == origin


def test_format_origin_hides_default_port():
    assert format_origin(("https", "a.b", 443)) == "https://a.b"
    assert format_origin(("http", "::1", 8080)) == "http://[::1]:8080"


def test_owns_only_same_scheme_host_port():
    p = Profile(name="p", base_url="https://api.example.com/v1")
    assert p.owns("https://api.example.com/v1/x")
    assert p.owns("https://API.EXAMPLE.COM:443/other")
    assert not p.owns("http://api.example.com/v1/x")  # scheme
    assert not p.owns("https://api.example.com:8443/v1")  # port
    assert not p.owns("https://evil.example.com/v1")  # host
    assert not p.owns("https://api.example.com.evil.invalid/")  # suffix trick
    assert not p.owns("https://user@evil.invalid/@api.example.com")
    assert not p.owns("/relative")


def test_url_joins_under_base_path():
    p = Profile(name="p", base_url="https://h.example.com/api/v1")
    assert p.base_url == "https://h.example.com/api/v1/"
    assert p.url("/users?x=1") == "https://h.example.com/api/v1/users?x=1"
    assert p.url("users") == "https://h.example.com/api/v1/users"
    assert p.url("https://other.example.com/x") == "https://other.example.com/x"
    assert p.url("/go?to=https://x.example.com/") == "https://h.example.com/api/v1/go?to=https://x.example.com/"
    with pytest.raises(ProfileError):
        p.url("//other.example.com/x")


def test_plain_http_only_to_loopback_unless_allowed():
    Profile(name="p", base_url="http://127.0.0.1:1")
    Profile(name="p", base_url="http://localhost:1")
    with pytest.raises(ProfileError, match="--allow-http"):
        Profile(name="p", base_url="http://api.example.com")
    p = Profile(name="p", base_url="http://api.example.com", allow_http=True)
    assert p.owns("http://api.example.com/x")


@pytest.mark.parametrize(
    "url, words",
    [
        ("api.example.com", "not an absolute URL"),
        ("ftp://example.com", "only http"),
        ("https://u:pw@example.com", "must not contain a user name"),
        ("https://example.com/?a=1", "no query string"),
        ("https://example.com:99999/", "not a valid URL"),
    ],
)
def test_bad_base_urls(url, words):
    with pytest.raises(ProfileError, match=words):
        Profile(name="p", base_url=url)


def test_bad_body_mode():
    with pytest.raises(ProfileError):
        Profile(name="p", base_url="https://a.example.com", body="xml")


def test_keyring_service_names_origin():
    p = Profile(name="x", base_url="https://a.example.com/v1/")
    assert p.keyring_service == "session-magics https://a.example.com"
