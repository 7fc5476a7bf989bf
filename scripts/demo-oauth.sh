#!/usr/bin/env bash
# Start the OAuth demo (make demo-oauth): an OpenID provider, an API that accepts its
# tokens, and JupyterLab on notebooks/oauth.ipynb.
#
#   scripts/demo-oauth.sh PYTHON IDP_PORT API_PORT [JUPYTER_LAB_ARG...]
#
# PYTHON is the interpreter of an environment with session-magics[lab] installed, node
# must be on PATH and demo/idp's npm packages installed (make demo-oauth does all three).
# `python -m demo.idp` runs the provider (oidc-provider on Node, demo/idp/provider.mjs)
# on 127.0.0.1:IDP_PORT and the API on 127.0.0.1:API_PORT for as long as JupyterLab runs.
# JupyterLab's kernels find them in the variables the notebook reads: OAUTH_ISSUER,
# OAUTH_API_URL, OAUTH_CLIENT_SECRET (the secret of the client "robot": random, unless
# set) and OAUTH_FLOW (device, code or client; passed on when set).
#
# The keyring (an OS keyring, or a throwaway gnome-keyring) and stopping (one Ctrl+C
# stops JupyterLab, then the provider and the API, then the throwaway keyring) are
# scripts/demo-lib.sh's, shared with scripts/demo.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
# shellcheck source=scripts/demo-lib.sh
. scripts/demo-lib.sh

[ $# -ge 3 ] || die "usage: $0 PYTHON IDP_PORT API_PORT [JUPYTER_LAB_ARG...]"
demo_keyring "$1" "$here/demo-oauth.sh" "$@"
py=$1
idp_port=$2
api_port=$3
shift 3

hint="make demo-oauth DEMO_IDP_PORT=... DEMO_OAUTH_API_PORT=..."
[ "$idp_port" != "$api_port" ] || die "the provider and the API need two ports; choose: $hint"
demo_port_free "$idp_port" "make demo-oauth DEMO_IDP_PORT=$((idp_port + 2))"
demo_port_free "$api_port" "make demo-oauth DEMO_OAUTH_API_PORT=$((api_port + 2))"

export OAUTH_ISSUER="http://127.0.0.1:$idp_port"
export OAUTH_API_URL="http://127.0.0.1:$api_port"
if [ -z "${OAUTH_CLIENT_SECRET-}" ]; then
  OAUTH_CLIENT_SECRET=$("$py" -c 'import secrets; print(secrets.token_urlsafe(24))')
fi
export OAUTH_CLIENT_SECRET
case ${OAUTH_FLOW:-device} in
  device | code | client) ;;
  *) die "OAUTH_FLOW=$OAUTH_FLOW: the notebook knows device, code and client" ;;
esac

demo_server "the OpenID provider and the API" "$hint" "$idp_port" "$api_port" -- \
  "$py" -m demo.idp --issuer-port "$idp_port" --api-port "$api_port" --client-secret-env OAUTH_CLIENT_SECRET
echo "demo: OpenID provider at $OAUTH_ISSUER (oidc-provider; its sign-in page takes any name and"
echo "demo:   any password, e.g. ada / lovelace: the name becomes the token's subject)"
echo "demo: API at $OAUTH_API_URL (accepts the provider's tokens; GET /me says whose)"
echo "demo: client ids: notebook (public: --oauth device and --oauth code),"
echo "demo:   robot (confidential: --oauth client; its secret is in the kernels' \$OAUTH_CLIENT_SECRET)"
echo "demo: the notebook logs in with OAUTH_FLOW=${OAUTH_FLOW:-device} (device, code or client: make demo-oauth OAUTH_FLOW=...)"

demo_lab "$py" oauth.ipynb "$@"
