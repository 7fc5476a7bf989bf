#!/usr/bin/env bash
# Start the bundled demo API and JupyterLab on notebooks/quickstart.ipynb.
#
#   scripts/demo.sh PYTHON PORT [JUPYTER_LAB_ARG...]
#
# PYTHON is the interpreter of an environment with session-magics[lab]
# installed (`make demo` prepares .venv). The demo API listens on
# 127.0.0.1:PORT for as long as JupyterLab runs; SESSION_MAGICS_DEMO_URL tells
# the notebooks where it is.
#
# Tokens go to the OS keyring. Where there is none (a headless machine, a
# container: no Secret Service on the session bus), the demo runs inside
# scripts/with-secret-service.sh instead: a throwaway gnome-keyring that lives
# as long as the demo and is deleted afterwards. SESSION_MAGICS_DEMO_KEYRING=os
# refuses that fallback (the demo then uses whatever keyring Python finds).
set -euo pipefail

die() { echo "demo: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 PYTHON PORT [JUPYTER_LAB_ARG...]"
py=$1
port=$2
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# --- an OS keyring, or a throwaway one -----------------------------------------
if [ -z "${SESSION_MAGICS_SECRET_SERVICE-}" ] && [ "${SESSION_MAGICS_DEMO_KEYRING-}" != os ]; then
  # The same check %login makes: a usable, safe keyring backend (5 s at most).
  if ! problem=$("$py" - <<'EOF' 2>&1
import sys
from session_magics.errors import KeyringError
from session_magics.store import KeyringStore
try:
    KeyringStore(timeout=5).backend
except KeyringError as exc:
    print(exc)
    sys.exit(1)
EOF
  ); then
    if command -v gnome-keyring-daemon >/dev/null 2>&1 && command -v dbus-run-session >/dev/null 2>&1; then
      echo "demo: no usable OS keyring here (${problem%%. *})."
      echo "demo: running with a throwaway gnome-keyring; demo tokens are forgotten when the demo stops."
      exec scripts/with-secret-service.sh bash "$0" "$py" "$port" "$@"
    fi
    echo "demo: no usable OS keyring here, and gnome-keyring is not installed" >&2
    echo "demo: (make system-deps installs it); %login will say what else to do." >&2
  fi
fi

# --- the demo API ----------------------------------------------------------------
export SESSION_MAGICS_DEMO_URL="http://127.0.0.1:$port"
# Its own session (setsid): the Ctrl+C that asks JupyterLab to shut down does
# not stop the API first. It is stopped when this script exits.
setsid "$py" -m session_magics.demo --host 127.0.0.1 --port "$port" &
demo_pid=$!
trap 'kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
for _ in $(seq 100); do
  listening && break
  kill -0 "$demo_pid" 2>/dev/null || die "the demo API exited (is port $port taken? try: make demo DEMO_PORT=...)"
  sleep 0.2
done
listening || die "nothing listens on port $port after 20 s"
echo "demo: demo API at $SESSION_MAGICS_DEMO_URL (user demo, password penguins)"

# --- JupyterLab ------------------------------------------------------------------
root_flag=()
[ "$(id -u)" -ne 0 ] || root_flag=(--allow-root)
# Not exec: the EXIT trap above must run when JupyterLab ends.
"$(dirname "$py")/jupyter" lab --ip=127.0.0.1 "${root_flag[@]}" "$@" notebooks/quickstart.ipynb
