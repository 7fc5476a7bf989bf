#!/usr/bin/env python
"""OAuth login figures on loopback, against the test provider, and print a markdown table.

    python benchmarks/oauth_logins.py            # (make bench runs it after run.py)
    python benchmarks/oauth_logins.py --quick    # fewer repetitions

The provider is the one the tests use (``oidc-provider`` on Node, ``make idp``), behind
a recording proxy at the issuer's address; the API is a separate server that checks each
token at the provider's introspection endpoint. A person's part (the device approval, the
sign-in) goes through the provider's own pages, by form posts. What is measured, with the
core session object (no notebook):

1. a client-credentials login, discovery included;
2. a device login, from the start to the token (mostly the provider's polling interval);
3. a code login (PKCE, loopback redirect), from the start to the token, the sign-in included;
4. 1000 requests with access tokens of 2 s after a device login: how many refresh-token
   grants reached the issuer (counted at the recording proxy) against the lifetimes the
   run spanned (a token is renewed once half its lifetime is gone, when that comes before
   the leeway), and how many requests the API refused.

Each login figure is the median of several runs, with the lowest and highest. No threshold is
asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from session_magics.oauth import OAuthSession, OAuthSettings  # noqa: E402
from session_magics.profile import Profile  # noqa: E402
from session_magics.store import MemoryStore  # noqa: E402
from tests.idp.person import Person  # noqa: E402
from tests.idp.servers import CLIENT_SECRET, IdentityProvider, ProtectedApi, RecordingProxy  # noqa: E402

SECRET_ENV = "SESSION_MAGICS_BENCH_CLIENT_SECRET"


def timed(run: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def spread(times: list[float], unit: str) -> str:
    scale = 1000.0 if unit == "ms" else 1.0
    med, low, high = statistics.median(times) * scale, min(times) * scale, max(times) * scale
    fmt = "{:.0f}" if unit == "ms" else "{:.2f}"
    return f"{fmt.format(med)} {unit} ({fmt.format(low)}–{fmt.format(high)}, {len(times)} runs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--access-ttl", type=int, default=2, help="access token lifetime in s (default 2)")
    args = parser.parse_args(argv)
    logins, people = (3, 1) if args.quick else (10, 3)

    idp = IdentityProvider(access_ttl=args.access_ttl)
    idp.proxy = RecordingProxy().start()
    idp.start()
    idp.proxy.target = idp.listen
    api = ProtectedApi(idp).start()
    try:

        def session(flow: str) -> OAuthSession:
            settings = {"issuer": idp.issuer, "client_id": "notebook", "scope": "openid profile"}
            if flow == "client":
                settings.update(client_id="robot", scope="read", client_secret_env=SECRET_ENV)
            profile = Profile(name="bench", base_url=api.url, oauth=OAuthSettings(flow=flow, **settings))
            return OAuthSession(profile, MemoryStore())

        def client_login() -> None:
            os.environ[SECRET_ENV] = CLIENT_SECRET  # read once and removed by the login
            session("client").login_client()

        def device_login() -> OAuthSession:
            s = session("device")
            login = s.device_login().begin()
            login.start_in_thread()
            Person("ada").approve_device(login.link)
            login.wait(60)
            login.outcome(60)
            return s

        def code_login() -> None:
            s = session("code")
            login = s.code_login().begin()
            login.start_in_thread()
            redirected = Person("bob").sign_in(login.authorize_url, login.redirect_uri)
            requests.get(redirected, timeout=10)  # the browser following the redirect
            login.wait(30)
            login.outcome(30)

        rows = [
            ("client-credentials login, discovery included", spread(timed(client_login, logins), "ms")),
            ("device login (the provider polls every 1 s)", spread(timed(device_login, people), "s")),
            ("code login with PKCE, the sign-in included", spread(timed(code_login, people), "ms")),
        ]

        s = device_login()
        before = len(idp.proxy.requests())
        start = time.perf_counter()
        statuses = [s.request("GET", "/me").status_code for _ in range(1000)]
        took = time.perf_counter() - start
        grants = [
            r
            for r in idp.proxy.requests()[before:]
            if r["method"] == "POST"
            and parse_qs(r["body"].decode("latin-1")).get("grant_type") == ["refresh_token"]
        ]
        refused = sum(1 for code in statuses if code != 200)
        lifetimes = took / args.access_ttl
        rows.append(
            (
                f"1000 requests with {args.access_ttl} s access tokens",
                f"{len(grants)} refresh grants at the issuer in {took:.1f} s ({lifetimes:.1f} lifetimes),"
                f" {refused} requests refused",
            )
        )
    finally:
        api.stop()
        idp.stop()

    print("| OAuth on loopback (test provider) | Result |")
    print("|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
