# What the demos share (sourced by scripts/demo.sh and scripts/demo-oauth.sh, from the
# repository's root, under `set -euo pipefail`): the keyring, starting servers on
# 127.0.0.1, JupyterLab on a notebook, and stopping all of it on one Ctrl+C.
#
# Tokens go to the OS keyring. Where there is none (a headless machine, a container: no
# Secret Service on the session bus), demo_keyring runs the demo again inside
# scripts/with-secret-service.sh: a throwaway gnome-keyring that lives as long as the demo
# and is deleted afterwards. SESSION_MAGICS_DEMO_KEYRING=os refuses that fallback (the demo
# then uses whatever keyring Python finds).
#
# Stopping: one Ctrl+C stops everything, in order: JupyterLab (which shuts its kernels
# down), then the servers (last started first), then (when there is one) the throwaway
# keyring, whose directory is removed last. JupyterLab and the servers run in sessions of
# their own, so the terminal's Ctrl+C reaches the demo's script only: JupyterLab gets
# SIGTERM from there and does not ask "Shut down this Jupyter server (y/[n])?". Another
# Ctrl+C while stopping is ignored, so nothing is left half-stopped. SIGTERM stops the
# demo the same way.

die() { echo "demo: $*" >&2; exit 1; }

# demo_keyring PYTHON SCRIPT ARG...: returns when PYTHON finds a usable OS keyring (or
# there is no way to bring one); otherwise runs SCRIPT ARG... again with a throwaway one.
demo_keyring() {
  local py=$1
  shift
  [ -z "${SESSION_MAGICS_SECRET_SERVICE-}" ] && [ "${SESSION_MAGICS_DEMO_KEYRING-}" != os ] || return 0
  local problem
  # The same check %login makes: a usable, safe keyring backend (5 s at most).
  problem=$("$py" - <<'EOF' 2>&1
import sys
from session_magics.errors import KeyringError
from session_magics.store import KeyringStore
try:
    KeyringStore(timeout=5).backend
except KeyringError as exc:
    print(exc)
    sys.exit(1)
EOF
  ) && return 0
  if command -v gnome-keyring-daemon >/dev/null 2>&1 && command -v dbus-daemon >/dev/null 2>&1; then
    echo "demo: ${problem%%. *}."
    echo "demo: running with a throwaway gnome-keyring; demo tokens are forgotten when the demo stops."
    SECRET_SERVICE_SAY=demo exec scripts/with-secret-service.sh bash "$@"
  fi
  echo "demo: no usable OS keyring here, and gnome-keyring is not installed" >&2
  echo "demo: (make system-deps installs it); %login will say what else to do." >&2
}

# --- stopping -------------------------------------------------------------------
servers=()  # "PID NAME" of each server, in the order started
lab_pid=

# Whether a process runs (an exited child not reaped yet, a zombie, does not).
running() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# stop PID NAME SECONDS: SIGTERM, then SIGKILL after SECONDS (to its whole process
# group: it leads one, see demo_server); returns once it is gone.
stop() {
  local pid=$1 name=$2 limit=$3
  [ -n "$pid" ] || return 0
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + limit))
    while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if running "$pid"; then
      echo "demo: $name did not stop within $limit s; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  echo "demo: $name stopped"
}

demo_cleanup() {
  trap '' INT TERM  # a second Ctrl+C must not cut the clean-up short
  stop "$lab_pid" JupyterLab 60  # it shuts its kernels down first (up to a few seconds each)
  lab_pid=
  local i
  for ((i = ${#servers[@]} - 1; i >= 0; i--)); do
    stop "${servers[i]%% *}" "${servers[i]#* }" 10
  done
  servers=()
}
trap demo_cleanup EXIT
trap 'echo; echo "demo: stopping (Ctrl+C)"; exit 130' INT
trap 'echo "demo: stopping (SIGTERM)"; exit 143' TERM

# --- servers ----------------------------------------------------------------------
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# demo_port_free PORT HINT: stops the demo when something already listens on PORT (it
# would answer the notebook in the demo's place); HINT says how to choose another.
demo_port_free() {
  ! listening "$1" || die "port $1 is taken (something already listens on 127.0.0.1:$1); choose another: $2"
}

# demo_server NAME HINT PORT... -- COMMAND...: starts COMMAND in its own session (the
# terminal's Ctrl+C does not reach it; demo_cleanup stops it after JupyterLab), its
# output dropped (the demo says where it listens; its errors still reach the terminal),
# and returns
# once it listens on every PORT. It ended, or nothing listens after 20 s: the demo stops,
# saying so (HINT: how to choose other ports).
demo_server() {
  local name=$1 hint=$2 ports=() port pid
  shift 2
  while [ "$1" != -- ]; do ports+=("$1"); shift; done
  shift
  setsid "$@" >/dev/null &
  pid=$!
  servers+=("$pid $name")
  for port in "${ports[@]}"; do
    for _ in $(seq 100); do
      listening "$port" && break
      running "$pid" || die "$name exited (is port $port taken? try: $hint)"
      sleep 0.2
    done
    listening "$port" || die "nothing listens on port $port after 20 s"
  done
  running "$pid" || die "$name exited (is port $port taken? try: $hint)"
}

# --- JupyterLab -------------------------------------------------------------------
# demo_lab PYTHON NOTEBOOK [JUPYTER_LAB_ARG...]: JupyterLab on a working copy of
# notebooks/NOTEBOOK; prints the notebook's address and waits for JupyterLab. Does not
# return: the demo ends with it.
#
# JupyterLab works on copies in $DEMO_NOTEBOOKS (default artifacts/demo-notebooks/, which
# git ignores), so what it saves (autosave included: outputs, edits) never lands in the
# repository's notebooks/. A copy is refreshed only when notebooks/ has a newer version.
DEMO_NOTEBOOKS=${DEMO_NOTEBOOKS:-artifacts/demo-notebooks}
demo_lab() {
  local py=$1 notebook=$2 root_flag=() runtime_dir server_file notebook_url rc
  shift 2
  [ "$(id -u)" -ne 0 ] || root_flag=(--allow-root)
  runtime_dir=$("$py" -c 'from jupyter_core.paths import jupyter_runtime_dir; print(jupyter_runtime_dir())')
  mkdir -p "$DEMO_NOTEBOOKS"
  cp -u notebooks/*.ipynb "$DEMO_NOTEBOOKS/"
  echo "demo: JupyterLab works on copies in $DEMO_NOTEBOOKS/ (notebooks/ stays as it is; make clean removes them)"
  # Its own session too; the demo waits for it and stops it on Ctrl+C / SIGTERM.
  setsid "$(dirname "$py")/jupyter" lab --ip=127.0.0.1 "${root_flag[@]}" "$@" "$DEMO_NOTEBOOKS/$notebook" &
  lab_pid=$!

  # The address of the notebook, token included: JupyterLab's own banner names /lab, which
  # opens on the launcher, and its "Control-C ... twice" does not apply here. Read from the
  # file JupyterLab writes once it listens (setsid execs in place: the PID is JupyterLab's).
  server_file="$runtime_dir/jpserver-$lab_pid.json"
  for _ in $(seq 600); do
    [ -s "$server_file" ] || ! running "$lab_pid" || { sleep 0.2; continue; }
    break
  done
  if [ -s "$server_file" ] && notebook_url=$("$py" - "$server_file" "$notebook" <<'EOF'
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
print(f"{info['url']}lab/tree/{sys.argv[2]}{token}")
EOF
  ); then
    echo "demo: open $notebook_url"
    echo "demo: Ctrl+C here stops the demo and everything it started"
  fi
  set +e
  wait "$lab_pid"  # returns at once when Ctrl+C / SIGTERM arrives (the traps above)
  rc=$?
  set -e
  lab_pid=  # JupyterLab ended by itself (File > Shut Down): stop the servers and leave
  exit "$rc"
}
