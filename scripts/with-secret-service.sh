#!/usr/bin/env bash
# Run a command with a real, unlocked Secret Service (gnome-keyring) on a
# private D-Bus session bus, backed by a throwaway keyring directory.
#
#   scripts/with-secret-service.sh CMD [ARGS...]
#
# Inside CMD:
#   DBUS_SESSION_BUS_ADDRESS        points at the private bus
#   SESSION_MAGICS_SECRET_SERVICE=1 tells the tests a real Secret Service is there
# Everything else in CMD's environment is left as it was.
#
# The keyring files live in a temporary directory that is deleted afterwards.
# The private bus has no D-Bus activation, so nothing can start a second
# keyring daemon (one that would use your real keyring) behind our back: if
# our daemon dies, Secret Service calls fail instead. CMD's exit code is
# passed through.
set -euo pipefail

die() { echo "with-secret-service: $*" >&2; exit 1; }

if [ "${1-}" != "--inside-private-bus" ]; then
  # --- outside: a temporary directory and a private bus ----------------------
  [ $# -gt 0 ] || die "usage: $0 CMD [ARGS...]"
  for tool in dbus-run-session dbus-send gnome-keyring-daemon; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "$tool not found; run scripts/install-system-deps.sh (or: make system-deps)"
  done
  self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/secret-service.XXXXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  chmod 700 "$tmp"
  # The standard session bus, minus <standard_session_servicedirs/>.
  cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:dir=$tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
</busconfig>
EOF
  set +e
  dbus-run-session --config-file="$tmp/bus.conf" -- bash "$self" --inside-private-bus "$tmp" "$@"
  rc=$?
  set -e
  exit "$rc"
fi

# --- inside dbus-run-session: start the keyring daemon, then run CMD ----------
tmp=$2
shift 2
[ -n "${DBUS_SESSION_BUS_ADDRESS-}" ] || die "no DBUS_SESSION_BUS_ADDRESS inside dbus-run-session"
mkdir -m 700 "$tmp/home" "$tmp/data" "$tmp/config" "$tmp/cache" "$tmp/run" "$tmp/control"
daemon_pid=

stop_daemon() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon_pid" 2>/dev/null || true
  fi
}
trap stop_daemon EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A random password, used only to create and unlock this throwaway keyring.
# printf is a shell builtin, so the password never appears in a process list.
password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

# The daemon gets its own HOME, XDG directories and control directory: it
# creates its "login" keyring there and never sees the user's files.
printf %s "$password" | env -u GNOME_KEYRING_CONTROL -u SSH_AUTH_SOCK \
  HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
  XDG_CACHE_HOME="$tmp/cache" XDG_RUNTIME_DIR="$tmp/run" \
  gnome-keyring-daemon --foreground --unlock --components=secrets \
  --control-directory="$tmp/control" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
unset password

# The daemon answers only once it owns org.freedesktop.secrets; wait for that.
name_owned() {
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null \
    | grep -q 'boolean true'
}
limit=${SECRET_SERVICE_START_TIMEOUT:-10}
deadline=$((SECONDS + limit))
until name_owned; do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    cat "$tmp/daemon.log" >&2
    die "gnome-keyring-daemon exited before it owned org.freedesktop.secrets"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    cat "$tmp/daemon.log" >&2
    die "gnome-keyring-daemon did not own org.freedesktop.secrets within ${limit}s"
  fi
  sleep 0.05
done

export SESSION_MAGICS_SECRET_SERVICE=1
set +e
"$@"
rc=$?
set -e
exit "$rc"
