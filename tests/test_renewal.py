"""The renewal flow of ApiSession against the demo API: which statuses mean expired, the
proactive refresh, and a token another kernel stored meanwhile."""

from __future__ import annotations

import pytest

from session_magics import SessionExpired
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import KeyringStore


def session_for(api, backend, **profile):
    return ApiSession(Profile(name="t", base_url=api.url, user="demo", **profile), KeyringStore(backend))


def test_403_means_expired_only_when_configured(demo_api_factory, memory_keyring):
    api = demo_api_factory(expired_status=403)
    plain = session_for(api, memory_keyring)
    plain.login("demo", api.config.password)
    api.advance_clock(400)  # the access token expired on the server
    api.reset_stats()
    r = plain.request("GET", "/me")
    assert r.status_code == 403  # by default 403 is a refusal, shown as it is
    assert api.stats()["refresh_grants"] == 0

    aware = session_for(api, memory_keyring, expired_statuses=frozenset({401, 403}))
    r = aware.request("GET", "/me")
    assert r.status_code == 200
    assert api.stats()["refresh_grants"] == 1


def test_refreshes_before_expiry_within_the_leeway(demo_api_factory, memory_keyring):
    api = demo_api_factory(access_ttl=20)
    s = session_for(api, memory_keyring)
    s.leeway = 30  # the token expires within the leeway: renew before sending
    s.login("demo", api.config.password)
    api.reset_stats()
    assert s.request("GET", "/me").status_code == 200
    stats = api.stats()
    assert stats["refresh_grants"] == 1 and stats["unauthorized"] == 0


def test_a_token_another_kernel_stored_is_used_without_refreshing(api, memory_keyring):
    mine = session_for(api, memory_keyring)
    mine.login("demo", api.config.password)
    other = session_for(api, memory_keyring)  # another kernel, same keyring
    api.advance_clock(400)  # my access token is now expired on the server...
    other.login("demo", api.config.password)  # ...and the other kernel logged in again
    api.reset_stats()
    assert mine.request("GET", "/me").status_code == 200
    stats = api.stats()
    assert stats["unauthorized"] == 1  # the 401 that made it look
    assert stats["refresh_grants"] == 0 and stats["password_grants"] == 0


def test_never_loops_when_a_fresh_login_is_rejected_too(api, memory_keyring):
    """At most one refresh and one login per request: a token that is refused even right
    after logging in gives the server's answer, not another round."""
    s = session_for(api, memory_keyring, header="X-Not-Read-By-The-Server", scheme="")
    s.login("demo", api.config.password)
    logins = []

    def relogin(need):
        logins.append(need.reason)
        s.login("demo", api.config.password)

    r = s.request("GET", "/me", on_login=relogin)
    assert r.status_code == 401
    assert logins == ["expired"]


def test_expired_without_anyone_to_ask_raises_and_forgets(api, memory_keyring):
    s = session_for(api, memory_keyring)
    s.login("demo", api.config.password)
    api.advance_clock(10_000)  # both tokens expired
    with pytest.raises(SessionExpired, match="%login"):
        s.request("GET", "/me")
    assert KeyringStore(memory_keyring).load(s.profile, fresh=True) is None
