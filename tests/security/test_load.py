"""Load: 32 threads send through one ApiSession while its token expires at the server.

Every request succeeds, and each expiry costs exactly one refresh at the server (the
renewal is single-flight), never a new login.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from session_magics.demo import DemoServer
from session_magics.profile import Profile
from session_magics.session import ApiSession
from session_magics.store import KeyringStore, MemoryStore
from tests.keyrings import MemoryKeyring
from tests.security.helpers import DEMO_PASSWORD

THREADS = 32
ROUNDS = 5


@pytest.mark.parametrize("store", ["keyring", "memory"])
def test_32_threads_one_refresh_per_expiry(store):
    with DemoServer(access_ttl=300, refresh_ttl=3600, password=DEMO_PASSWORD) as api:
        ring = MemoryKeyring()
        backend = KeyringStore(ring) if store == "keyring" else MemoryStore()
        session = ApiSession(Profile(name="load", base_url=api.url, user="demo"), backend)
        session.login("demo", DEMO_PASSWORD)
        statuses: Counter[int] = Counter()
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                for _ in range(3):
                    code = session.request("GET", "/me").status_code
                    with lock:
                        statuses[code] += 1
            except BaseException as exc:  # reported below
                with lock:
                    errors.append(exc)

        try:
            for n in range(1, ROUNDS + 1):
                api.advance_clock(301)  # every thread's next request gets a 401
                barrier = threading.Barrier(THREADS)
                threads = [threading.Thread(target=worker, args=(barrier,)) for _ in range(THREADS)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert errors == []
                stats = api.stats()
                assert stats["refresh_grants"] == n, stats
                assert stats["refresh_failures"] == 0, stats
            assert statuses == {200: THREADS * 3 * ROUNDS}
            stats = api.stats()
            assert stats["password_grants"] == 1
            assert stats["unauthorized"] >= THREADS  # the expiry was met, by many at once
            if store == "keyring":
                assert ring.writes == 2 + ROUNDS  # the login (token + last user), then one per refresh
        finally:
            session.close()
