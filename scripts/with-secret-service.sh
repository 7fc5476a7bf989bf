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
# passed through (130 after Ctrl+C, 143 after SIGTERM).
#
# Stopping: CMD runs in the foreground, so Ctrl+C in a terminal reaches CMD
# (and this script); the bus and the keyring daemon run in sessions of their
# own, which a terminal's Ctrl+C does not reach. Whichever way CMD ends, this
# script waits for it, then stops the keyring daemon, then the bus, and removes
# the keyring directory last. A second Ctrl+C during that clean-up is ignored:
# it cannot cut the clean-up short and leave a daemon behind.
#
# SECRET_SERVICE_SAY=PREFIX: print "PREFIX: throwaway keyring stopped and
# removed" when done (scripts/demo.sh uses it); unset, nothing is printed.
set -euo pipefail

die() { echo "with-secret-service: $*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: $0 CMD [ARGS...]"
for tool in dbus-daemon dbus-send gnome-keyring-daemon setsid; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "$tool not found; run scripts/install-system-deps.sh (or: make system-deps)"
done

tmp=
bus_pid=
daemon_pid=
cleaned=

# Whether a process runs (an exited child of ours that is not reaped yet, a
# zombie, does not count: kill -0 would say it runs).
running() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# Ends a process this script started (not necessarily its child): SIGTERM, up to
# 5 s, then SIGKILL; returns once it is gone.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.05; done
  fi
  wait "$pid" 2>/dev/null || true  # reaps the keyring daemon (our child)
}

cleanup() {
  trap '' INT TERM  # a second Ctrl+C must not leave a daemon or the directory behind
  [ -z "$cleaned" ] || return 0
  cleaned=1
  stop_pid "$daemon_pid"
  stop_pid "$bus_pid"
  [ -z "$tmp" ] || rm -rf "$tmp"
  [ -z "${SECRET_SERVICE_SAY-}" ] || echo "$SECRET_SERVICE_SAY: throwaway keyring stopped and removed"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/secret-service.XXXXXXXX")
chmod 700 "$tmp"
mkdir -m 700 "$tmp/home" "$tmp/data" "$tmp/config" "$tmp/cache" "$tmp/run" "$tmp/control"

# --- a private bus: the standard session bus, minus <standard_session_servicedirs/>
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
# --fork: the bus detaches into a session of its own once it listens, and prints
# its address and process id.
bus=$(dbus-daemon --config-file="$tmp/bus.conf" --fork --nopidfile --nosyslog \
  --print-address=1 --print-pid=1 </dev/null 2>"$tmp/bus.log") \
  || { cat "$tmp/bus.log" >&2; die "dbus-daemon did not start"; }
bus_pid=$(sed -n 2p <<<"$bus")
DBUS_SESSION_BUS_ADDRESS=$(sed -n 1p <<<"$bus")
[ -n "$bus_pid" ] && [ -n "$DBUS_SESSION_BUS_ADDRESS" ] || die "dbus-daemon printed no address"
export DBUS_SESSION_BUS_ADDRESS
unset DBUS_STARTER_ADDRESS DBUS_STARTER_BUS_TYPE

# --- the keyring daemon --------------------------------------------------------
# A random password, used only to create and unlock this throwaway keyring.
# printf is a shell builtin, so the password never appears in a process list.
password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

# The daemon gets its own HOME, XDG directories and control directory: it
# creates its "login" keyring there and never sees the user's files. setsid: a
# session of its own, out of reach of the terminal's Ctrl+C (it is stopped
# after CMD, in cleanup).
printf %s "$password" | env -u GNOME_KEYRING_CONTROL -u SSH_AUTH_SOCK \
  HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
  XDG_CACHE_HOME="$tmp/cache" XDG_RUNTIME_DIR="$tmp/run" \
  setsid gnome-keyring-daemon --foreground --unlock --components=secrets \
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

# --- CMD, in the foreground ----------------------------------------------------
export SESSION_MAGICS_SECRET_SERVICE=1
set +e
"$@"
rc=$?
set -e
exit "$rc"
