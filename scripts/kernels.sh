#!/usr/bin/env bash
# Create the two kernel environments the browser tests run against, one per
# supported ipykernel line, each with ipywidgets and this project (editable):
#
#   .venv-k6   ipykernel 6.29.x   kernelspec name sm-k6
#   .venv-k7   ipykernel 7.4.x    kernelspec name sm-k7
#
# Usage:
#   scripts/kernels.sh                      create/update both environments, then
#                                           print "NAME<TAB>PYTHON" per kernel
#   scripts/kernels.sh --data-dir DIR       also write the kernelspecs into
#                                           DIR/kernels/sm-k6 and DIR/kernels/sm-k7
#                                           (DIR is a JUPYTER_DATA_DIR)
#   scripts/kernels.sh --print              print "NAME<TAB>PYTHON" only (no install);
#                                           exits 1 if an environment is missing
#
# tests/e2e/harness.py calls it with --data-dir pointing into the temporary
# JUPYTER_DATA_DIR of the JupyterLab it starts; `make kernels` calls it bare.
#
# Versions can be overridden with SM_K6_SPEC / SM_K7_SPEC (pip requirement
# strings). The interpreter used to create the environments is $PYTHON, else
# python3.11, else python3.
#
# Idempotent and fast: each environment keeps a stamp file holding a hash of
# the specs and of pyproject.toml; when the stamp matches, nothing is
# installed and the script returns in well under a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
k6_spec="${SM_K6_SPEC:-ipykernel==6.29.5}"
k7_spec="${SM_K7_SPEC:-ipykernel>=7.4,<7.5}"
widgets_spec="${SM_WIDGETS_SPEC:-ipywidgets==8.1.9}"

data_dir=""
print_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data_dir="$2"; shift 2 ;;
    --data-dir=*) data_dir="${1#*=}"; shift ;;
    --print) print_only=1; shift ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "kernels.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for p in python3.11 python3; do
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return; fi
  done
  echo "kernels.sh: no python3 found" >&2
  exit 1
}

hash_of() {
  { printf '%s\n' "$@"; cat "$root/pyproject.toml" "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-16
}

ensure_env() {  # ensure_env DIR SPEC
  local dir="$1" spec="$2"
  local venv="$root/$dir"
  local stamp="$venv/.session-magics-stamp"
  local want
  want="$(hash_of "$spec" "$widgets_spec")"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ "$print_only" -eq 1 ]; then
    echo "kernels.sh: $dir is missing or stale; run scripts/kernels.sh" >&2
    exit 1
  fi
  echo "kernels.sh: preparing $dir ($spec)" >&2
  if [ ! -x "$venv/bin/python" ]; then
    "$(pick_python)" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # The project itself (editable) with pandas, as a user's notebook kernel would have it.
  "$venv/bin/python" -m pip install -q -e "$root[pandas]" "$spec" "$widgets_spec" >&2
  "$venv/bin/python" -c 'import ipykernel, ipywidgets, session_magics; print("kernels.sh: ipykernel", ipykernel.__version__, "ipywidgets", ipywidgets.__version__)' >&2
  echo "$want" >"$stamp"
}

write_spec() {  # write_spec NAME DISPLAY PYTHON
  local name="$1" display="$2" py="$3"
  local dir="$data_dir/kernels/$name"
  mkdir -p "$dir"
  cat >"$dir/kernel.json" <<EOF
{
  "argv": ["$py", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
  "display_name": "$display",
  "language": "python",
  "metadata": {"debugger": true}
}
EOF
}

ensure_env .venv-k6 "$k6_spec"
ensure_env .venv-k7 "$k7_spec"

k6_py="$root/.venv-k6/bin/python"
k7_py="$root/.venv-k7/bin/python"

if [ -n "$data_dir" ]; then
  write_spec sm-k6 "Python (ipykernel 6)" "$k6_py"
  write_spec sm-k7 "Python (ipykernel 7)" "$k7_py"
fi

printf 'sm-k6\t%s\n' "$k6_py"
printf 'sm-k7\t%s\n' "$k7_py"
