"""``python -m demo.idp``: the OpenID provider and an API that accepts its tokens, on
127.0.0.1, in the foreground until SIGINT or SIGTERM (scripts/demo-oauth.sh runs it).

It prints one line once both listen, ``issuer http://127.0.0.1:PORT api
http://127.0.0.1:PORT``, and stops both when it is stopped, or when the provider ends.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import types

from demo.idp.servers import IdentityProvider, ProtectedApi, ProviderUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.idp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer-port", type=int, default=0, help="the provider's port (0: any free one)")
    parser.add_argument("--api-port", type=int, default=0, help="the API's port (0: any free one)")
    parser.add_argument(
        "--client-secret-env",
        metavar="VAR",
        required=True,
        help="the environment variable holding the secret of the confidential client 'robot'",
    )
    parser.add_argument("--access-ttl", type=int, default=60, help="access tokens live this long (s)")
    parser.add_argument("--refresh-ttl", type=int, default=3600, help="refresh tokens live this long (s)")
    parser.add_argument("--device-ttl", type=int, default=600, help="a device code waits this long (s)")
    args = parser.parse_args(argv)
    client_secret = os.environ.get(args.client_secret_env, "")
    if not client_secret:
        parser.error(f"${args.client_secret_env} is empty")

    def stop(signum: int, frame: types.FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    idp = IdentityProvider(
        port=args.issuer_port,
        client_secret=client_secret,
        api_secret=os.urandom(24).hex(),  # the API's own: nobody else needs it
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        device_ttl=args.device_ttl,
    )
    api = ProtectedApi(idp, port=args.api_port, record=False)
    try:
        try:
            idp.start()
            api.start()
        except (ProviderUnavailable, OSError) as exc:
            print(f"python -m demo.idp: {exc}", file=sys.stderr)
            return 1
        print(f"issuer {idp.issuer} api {api.url}", flush=True)
        assert idp.proc is not None
        status = idp.proc.wait()  # until a signal (SystemExit) or the provider ends
        ended = f"the OpenID provider ended ({status}): {idp.stderr[-2000:]}"
        print(f"python -m demo.idp: {ended}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut this short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        api.stop()
        idp.stop()


if __name__ == "__main__":
    sys.exit(main())
