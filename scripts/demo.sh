#!/usr/bin/env bash
# Start the bundled demo API and JupyterLab on notebooks/quickstart.ipynb (make demo).
#
#   scripts/demo.sh PYTHON PORT [JUPYTER_LAB_ARG...]
#
# PYTHON is the interpreter of an environment with session-magics[lab]
# installed (`make demo` prepares .venv). The demo API listens on
# 127.0.0.1:PORT for as long as JupyterLab runs; SESSION_MAGICS_DEMO_URL tells
# the notebooks where it is.
#
# The keyring (an OS keyring, or a throwaway gnome-keyring) and stopping (one
# Ctrl+C stops JupyterLab, then the demo API, then the throwaway keyring) are
# scripts/demo-lib.sh's, shared with scripts/demo-oauth.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
# shellcheck source=scripts/demo-lib.sh
. scripts/demo-lib.sh

[ $# -ge 2 ] || die "usage: $0 PYTHON PORT [JUPYTER_LAB_ARG...]"
demo_keyring "$1" "$here/demo.sh" "$@"
py=$1
port=$2
shift 2

export SESSION_MAGICS_DEMO_URL="http://127.0.0.1:$port"
hint="make demo DEMO_PORT=$((port + 1))"
demo_port_free "$port" "$hint"
# --quiet: only its warnings and errors reach the terminal.
demo_server "the demo API" "$hint" "$port" -- \
  "$py" -m session_magics.demo --host 127.0.0.1 --port "$port" --quiet
echo "demo: demo API at $SESSION_MAGICS_DEMO_URL (user demo, password penguins)"

demo_lab "$py" quickstart.ipynb "$@"
