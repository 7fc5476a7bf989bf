#!/usr/bin/env bash
# Run a command with a real, unlocked Secret Service (gnome-keyring) on a
# private D-Bus session bus, backed by a throwaway keyring directory.
#
#   scripts/with-secret-service.sh CMD [ARGS...]
#
# Inside CMD:
#   DBUS_SESSION_BUS_ADDRESS        points at the private bus (dbus-run-session)
#   SESSION_MAGICS_SECRET_SERVICE=1 tells the tests a real Secret Service is there
# The keyring files live in a temporary directory that is deleted afterwards;
# the user's own keyring and session bus are never used. CMD's exit code is
# passed through.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"

die() { echo "with-secret-service: $*" >&2; exit 1; }

if [ "${1-}" != "--inside-private-bus" ]; then
  [ $# -gt 0 ] || die "usage: $0 CMD [ARGS...]"
  for tool in dbus-run-session dbus-send gnome-keyring-daemon; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "$tool not found; run scripts/install-system-deps.sh (or: make system-deps)"
  done
  exec dbus-run-session -- bash "$self" --inside-private-bus "$@"
fi
shift

# --- from here on we are inside dbus-run-session ---------------------------
[ -n "${DBUS_SESSION_BUS_ADDRESS-}" ] || die "no DBUS_SESSION_BUS_ADDRESS inside dbus-run-session"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/secret-service.XXXXXXXX")
chmod 700 "$tmp"
mkdir -m 700 "$tmp/home" "$tmp/data" "$tmp/config" "$tmp/cache" "$tmp/run" "$tmp/control"
daemon_pid=

cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A random password, used only to create and unlock this throwaway keyring.
# printf is a shell builtin, so the password never appears in a process list.
password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

# The daemon gets its own HOME / XDG dirs / control directory: it creates
# the "login" keyring there and never sees the user's. CMD keeps its own
# environment (only the bus address differs).
printf %s "$password" | env -u GNOME_KEYRING_CONTROL -u SSH_AUTH_SOCK \
  HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
  XDG_CACHE_HOME="$tmp/cache" XDG_RUNTIME_DIR="$tmp/run" \
  gnome-keyring-daemon --foreground --unlock --components=secrets \
  --control-directory="$tmp/control" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
unset password

# Wait until the daemon owns org.freedesktop.secrets. Calling the service
# earlier would make D-Bus activate a second, locked daemon.
name_owned() {
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null \
    | grep -q 'boolean true'
}
deadline=$((SECONDS + ${SECRET_SERVICE_START_TIMEOUT:-10}))
until name_owned; do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    cat "$tmp/daemon.log" >&2
    die "gnome-keyring-daemon exited before it owned org.freedesktop.secrets"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    cat "$tmp/daemon.log" >&2
    die "gnome-keyring-daemon did not own org.freedesktop.secrets within ${SECRET_SERVICE_START_TIMEOUT:-10}s"
  fi
  sleep 0.05
done

export SESSION_MAGICS_SECRET_SERVICE=1
set +e
"$@"
rc=$?
set -e
exit "$rc"
