#!/usr/bin/env bash
# Install the Debian packages this project needs for its tests and demo.
#
#   scripts/install-system-deps.sh [--demo] [--node] [--quiet] [EXTRA_PACKAGE...]
#
# --demo: only what `make demo` needs (no browser, no Node.js).
# --node: with --demo, Node.js and npm too (`make demo-oauth`: its OpenID provider).
# --quiet: print nothing when nothing is missing.
#
# Only packages that are missing are installed; when nothing is missing the
# script makes no network call and returns in well under a second.
# Uses sudo when not run as root.
set -euo pipefail

demo_only=
node=
quiet=
while [ $# -gt 0 ]; do
  case $1 in
    --demo) demo_only=1 ;;
    --node) node=1 ;;
    --quiet) quiet=1 ;;
    *) break ;;
  esac
  shift
done

packages=(
  python3-venv       # python3 -m venv (Debian's python3 ships without it)
  python3-pip
  dbus               # dbus-daemon, dbus-send: a private session bus
  gnome-keyring      # a real Secret Service (org.freedesktop.secrets) behind keyring
)
if [ -z "$demo_only" ]; then
  packages+=(
    chromium           # headless browser for the JupyterLab tests (/usr/bin/chromium)
    fonts-dejavu-core  # readable text in screenshots
  )
fi
# Node.js and npm for the OpenID provider of the tests and make demo-oauth (oidc-provider 8
# runs on Debian 12's nodejs 18 and later). A node already on PATH (e.g. from NodeSource,
# whose nodejs package brings npm) is used as it is.
if [ -z "$demo_only" ] || [ -n "$node" ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
  fi
fi
packages+=("$@")

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: this script supports Debian/Ubuntu (dpkg + apt-get) only." >&2
  echo "Install these packages by other means: ${packages[*]}" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  [ -n "$quiet" ] || echo "install-system-deps: all present (${packages[*]})"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-system-deps: not root and no sudo; please install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
