"""The renewal flow of ApiSession against the demo API: which statuses mean expired, the
proactive refresh, and a token another kernel stored meanwhile."""

from __future__ import annotations

import time

import pytest

import session_magics.tokens
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


class _ClockAhead:
    """The time module as seen by session_magics.tokens, ``seconds`` ahead: a token looks as
    old as it would after that long, without waiting (the server's clock is the demo API's)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + self.seconds


def test_refreshes_before_expiry_within_the_leeway(demo_api_factory, memory_keyring, monkeypatch):
    api = demo_api_factory(access_ttl=20)
    s = session_for(api, memory_keyring)
    s.leeway = 30  # the token expires within the leeway...
    s.login("demo", api.config.password)
    monkeypatch.setattr(session_magics.tokens, "time", _ClockAhead(11))  # ...and is past half its life
    api.reset_stats()
    assert s.request("GET", "/me").status_code == 200
    stats = api.stats()
    assert stats["refresh_grants"] == 1 and stats["unauthorized"] == 0


def test_a_token_shorter_lived_than_the_leeway_is_not_renewed_before_every_request(
    demo_api_factory, memory_keyring
):
    """A 20 s token with a 30 s leeway is used for the first half of its life: renewing it
    whenever it expires "within the leeway" would post a refresh grant before every request."""
    api = demo_api_factory(access_ttl=20)
    s = session_for(api, memory_keyring)
    s.leeway = 30
    s.login("demo", api.config.password)
    api.reset_stats()
    for _ in range(5):
        assert s.request("GET", "/me").status_code == 200
    stats = api.stats()
    assert stats["refresh_grants"] == 0 and stats["unauthorized"] == 0


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


def refresh_requests(api):
    stats = api.stats()
    return stats["refresh_grants"] + stats["refresh_failures"]


def test_a_truly_expired_session_with_a_failing_refresh_makes_one_refresh_request(api, memory_keyring):
    """The token is expired for the client (within the leeway) and the server (both tokens):
    the proactive refresh fails, and the 401 that follows does not try a second one."""
    s = session_for(api, memory_keyring)
    s.login("demo", api.config.password)
    s.leeway = 100_000  # the client sees the token as expired
    api.advance_clock(100_000)  # and so does the server, refresh token included
    api.reset_stats()
    with pytest.raises(SessionExpired):
        s.request("GET", "/me")
    assert refresh_requests(api) == 1
    assert api.stats()["refresh_failures"] == 1


def _two_kernels(api, memory_keyring, tmp_path):
    """Two sessions with their own stores (caches) over one keyring and one lock file."""
    lock = tmp_path / "keyring.lock"
    a, b = (
        ApiSession(Profile(name="t", base_url=api.url, user="demo"), KeyringStore(ring, lock_path=lock))
        for ring in (memory_keyring, memory_keyring)
    )
    a.login("demo", api.config.password)
    assert b.token is not None and b.token.access_token == a.token.access_token
    api.advance_clock(400)  # access tokens expired; the refresh token (rotating) is good
    api.reset_stats()
    return a, b


def test_a_refresh_token_another_kernel_just_used_is_not_sent_again(api, memory_keyring, tmp_path):
    """Kernel A refreshed (the refresh token rotated); kernel B, still holding the spent
    one, re-reads the store under the keyring lock and takes A's token: no request."""
    a, b = _two_kernels(api, memory_keyring, tmp_path)
    stale = b.token
    renewed = a.refresh()
    assert renewed is not None
    got = b.refresh(stale=stale)
    assert got is not None and got.access_token == renewed.access_token
    assert refresh_requests(api) == 1 and api.stats()["refresh_failures"] == 0
    assert b.request("GET", "/me").status_code == 200


def test_two_kernels_refreshing_at_once_make_one_refresh_request(api, memory_keyring, tmp_path):
    import threading

    a, b = _two_kernels(api, memory_keyring, tmp_path)
    barrier = threading.Barrier(2)
    results = {}

    def run(name, session):
        stale = session.token
        barrier.wait()
        results[name] = session.refresh(stale=stale)

    threads = [threading.Thread(target=run, args=pair) for pair in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] is not None and results["b"] is not None
    assert results["a"].access_token == results["b"].access_token
    assert refresh_requests(api) == 1 and api.stats()["refresh_failures"] == 0
