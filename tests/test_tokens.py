import time

import jwt
import pytest

from session_magics.errors import LoginError
from session_magics.tokens import FieldNames, Token, jwt_expiry, parse_token_response

NOW = 1_800_000_000.0


def make_jwt(exp):
    return jwt.encode({"sub": "u", "exp": exp}, "k" * 32, algorithm="HS256")


def test_rfc6749_response():
    t = parse_token_response(
        {"access_token": "A", "token_type": "bearer", "expires_in": 300, "refresh_token": "R"},
        user="demo",
        now=NOW,
    )
    assert (t.access_token, t.token_type, t.refresh_token, t.expires_at) == ("A", "Bearer", "R", NOW + 300)
    assert t.refresh_field == "refresh_token" and t.user == "demo"


def test_jwt_pair_expiry_from_claim():
    access = make_jwt(int(NOW) + 120)
    t = parse_token_response({"access": access, "refresh": "R"}, now=NOW)
    assert t.access_token == access and t.refresh_token == "R" and t.refresh_field == "refresh"
    assert t.expires_at == NOW + 120


@pytest.mark.parametrize("name", ["token", "key"])
def test_single_token(name):
    t = parse_token_response({name: "abc"}, now=NOW)
    assert t.access_token == "abc" and t.refresh_token is None and t.expires_at is None


def test_refresh_keeps_old_refresh_token_when_not_rotated():
    old = Token("A", refresh_token="R", refresh_field="refresh", user="u")
    t = parse_token_response({"access": "B"}, previous=old, now=NOW)
    assert t.access_token == "B" and t.refresh_token == "R" and t.refresh_field == "refresh"


def test_configured_field_names_with_dotted_paths():
    data = {"data": {"jwt": "A", "renew": "R", "ttl": "60"}}
    t = parse_token_response(data, fields=FieldNames("data.jwt", "data.renew", "data.ttl"), now=NOW)
    assert (t.access_token, t.refresh_token, t.expires_at) == ("A", "R", NOW + 60)


@pytest.mark.parametrize("data", [{"user": "x"}, {"access_token": ""}, ["A"], "A", {"access_token": 5}])
def test_no_token_is_a_login_error(data):
    with pytest.raises(LoginError):
        parse_token_response(data)


def test_missing_configured_field():
    with pytest.raises(LoginError, match="'data.jwt'"):
        parse_token_response({"data": {}}, fields=FieldNames(access="data.jwt"))


def test_repr_and_str_hide_secrets():
    secret, refresh = "s3cr3t-access-value", "s3cr3t-refresh-value"
    t = Token(secret, refresh_token=refresh, expires_at=time.time() + 90, user="demo")
    for text in (repr(t), str(t), f"{t}", repr([t])):
        assert secret not in text and refresh not in text
        assert "demo" in text and "refreshable" in text


def test_json_round_trip():
    t = Token("A", refresh_token="R", expires_at=NOW, user="u", refresh_field="refresh", obtained_at=NOW - 5)
    assert Token.from_json(t.to_json()) == t


def test_expiry_helpers():
    t = Token("A", expires_at=NOW + 10)
    assert not t.is_expired(now=NOW)
    assert t.is_expired(leeway=30, now=NOW)
    assert Token("A").is_expired(now=NOW) is False
    assert "expired" in Token("A", expires_at=NOW - 1).describe_expiry(now=NOW)


def test_expiry_reads_as_one_sentence_after_token():
    """The "Logged in" and --status lines say "token expires in 4 min, at …": no nested
    parentheses, and an expired token does not read "token expires expired"."""
    fresh = Token("A", expires_at=NOW + 240).describe_expiry(now=NOW)
    assert fresh.startswith("expires in 4 min, at ") and "(" not in fresh, fresh
    assert Token("A", expires_at=NOW - 1).describe_expiry(now=NOW).startswith("expired at ")
    assert Token("A").describe_expiry(now=NOW) == "expiry unknown"


def test_a_short_lived_token_is_renewed_at_half_its_lifetime_not_before_every_request():
    # 5 s tokens with the default 30 s leeway: fresh for the first half, due in the second.
    t = Token("A", expires_at=NOW + 5, obtained_at=NOW)
    assert not t.is_expired(leeway=30, now=NOW)
    assert not t.is_expired(leeway=30, now=NOW + 2.4)
    assert t.is_expired(leeway=30, now=NOW + 2.6)
    # A long-lived token keeps the whole leeway.
    long = Token("A", expires_at=NOW + 3600, obtained_at=NOW)
    assert not long.is_expired(leeway=30, now=NOW + 3569)
    assert long.is_expired(leeway=30, now=NOW + 3571)
    # A stored token of an old format (no time it was obtained) keeps the whole leeway too.
    assert Token("A", expires_at=NOW + 10, obtained_at=0.0).is_expired(leeway=30, now=NOW)


def test_jwt_expiry_of_non_jwt():
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.b.c") is None
