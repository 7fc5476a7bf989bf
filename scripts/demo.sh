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
#
# Stopping: one Ctrl+C stops everything, in order: JupyterLab (which shuts its
# kernels down), then the demo API, then (when there is one) the throwaway
# keyring, whose directory is removed last. JupyterLab and the demo API run in
# sessions of their own, so the terminal's Ctrl+C reaches this script only:
# JupyterLab gets SIGTERM from here and does not ask "Shut down this Jupyter
# server (y/[n])?". Another Ctrl+C while stopping is ignored, so nothing is left
# half-stopped. SIGTERM stops the demo the same way.
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
    if command -v gnome-keyring-daemon >/dev/null 2>&1 && command -v dbus-daemon >/dev/null 2>&1; then
      echo "demo: ${problem%%. *}."
      echo "demo: running with a throwaway gnome-keyring; demo tokens are forgotten when the demo stops."
      SECRET_SERVICE_SAY=demo exec scripts/with-secret-service.sh bash "$0" "$py" "$port" "$@"
    fi
    echo "demo: no usable OS keyring here, and gnome-keyring is not installed" >&2
    echo "demo: (make system-deps installs it); %login will say what else to do." >&2
  fi
fi

# --- stopping -------------------------------------------------------------------
api_pid=
lab_pid=

# Whether a process runs (an exited child not reaped yet, a zombie, does not).
running() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# stop PID NAME SECONDS: SIGTERM, then SIGKILL after SECONDS; returns once it is gone.
stop() {
  local pid=$1 name=$2 limit=$3
  [ -n "$pid" ] || return 0
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + limit))
    while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if running "$pid"; then
      echo "demo: $name did not stop within $limit s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  echo "demo: $name stopped"
}

cleanup() {
  trap '' INT TERM  # a second Ctrl+C must not cut the clean-up short
  stop "$lab_pid" JupyterLab 60  # it shuts its kernels down first (up to a few seconds each)
  lab_pid=
  stop "$api_pid" "the demo API" 10
  api_pid=
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping (Ctrl+C)"; exit 130' INT
trap 'echo "demo: stopping (SIGTERM)"; exit 143' TERM

# --- the demo API ----------------------------------------------------------------
export SESSION_MAGICS_DEMO_URL="http://127.0.0.1:$port"
# Its own session (setsid): the terminal's Ctrl+C does not reach it; cleanup stops
# it after JupyterLab. --quiet, and its one line of output dropped: the line below
# says where it is; its warnings and errors still reach the terminal.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
# Whatever listens there already would answer the notebooks in the demo API's place.
! listening || die "port $port is taken (something already listens on 127.0.0.1:$port); choose another: make demo DEMO_PORT=$((port + 1))"
setsid "$py" -m session_magics.demo --host 127.0.0.1 --port "$port" --quiet >/dev/null &
api_pid=$!

for _ in $(seq 100); do
  listening && break
  running "$api_pid" || die "the demo API exited (is port $port taken? try: make demo DEMO_PORT=...)"
  sleep 0.2
done
listening || die "nothing listens on port $port after 20 s"
running "$api_pid" || die "the demo API exited (is port $port taken? try: make demo DEMO_PORT=...)"
echo "demo: demo API at $SESSION_MAGICS_DEMO_URL (user demo, password penguins)"

# --- JupyterLab ------------------------------------------------------------------
root_flag=()
[ "$(id -u)" -ne 0 ] || root_flag=(--allow-root)
runtime_dir=$("$py" -c 'from jupyter_core.paths import jupyter_runtime_dir; print(jupyter_runtime_dir())')
# Its own session too; this script waits for it and stops it on Ctrl+C / SIGTERM.
setsid "$(dirname "$py")/jupyter" lab --ip=127.0.0.1 "${root_flag[@]}" "$@" notebooks/quickstart.ipynb &
lab_pid=$!

# The address of the quickstart, token included: JupyterLab's own banner names /lab, which
# opens on the launcher, and its "Control-C ... twice" does not apply here. Read from the
# file JupyterLab writes once it listens (setsid execs in place: the PID is JupyterLab's).
server_file="$runtime_dir/jpserver-$lab_pid.json"
for _ in $(seq 600); do
  [ -s "$server_file" ] || ! running "$lab_pid" || { sleep 0.2; continue; }
  break
done
if [ -s "$server_file" ] && notebook_url=$("$py" - "$server_file" <<'EOF'
import json
import sys
import time
for _ in range(50):  # the file may be caught half-written
    try:
        with open(sys.argv[1]) as f:
            info = json.load(f)
        break
    except ValueError:
        time.sleep(0.1)
else:
    sys.exit(1)
token = f"?token={info['token']}" if info.get("token") else ""
print(f"{info['url']}lab/tree/quickstart.ipynb{token}")
EOF
); then
  echo "demo: open $notebook_url"
  echo "demo: Ctrl+C here stops the demo and everything it started"
fi
set +e
wait "$lab_pid"  # returns at once when Ctrl+C / SIGTERM arrives (the traps above)
rc=$?
set -e
lab_pid=  # JupyterLab ended by itself (File > Shut Down): stop the API and leave
exit "$rc"
