#!/usr/bin/env bash
# Sets up egresswatch on a Debian/Ubuntu machine (as root) and runs it.
#   bash scripts/setup.sh run  [run args...]     install, then run the monitor (`egresswatch run`)
#   bash scripts/setup.sh test [pytest args...]  install with test dependencies, start PostgreSQL, run the suite
# Idempotent: a second call only checks what is there. What it leaves behind, and how to remove
# it: README.md, "What the set-up leaves behind". EGRESSWATCH_BIN_DIR: where the command link goes.
set -euo pipefail
mode=${1:-}; shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${EGRESSWATCH_VENV:-$root/.venv}  # `run` installs a copy in /opt/egresswatch/venv instead
export DEBIAN_FRONTEND=noninteractive

need_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null 2>&1; then
    echo "setup.sh: run as root: sudo bash scripts/setup.sh $mode" >&2
  else
    echo "setup.sh: run as root (no sudo here): su -c 'bash scripts/setup.sh $mode'" >&2
  fi
  exit 2
}

quietly() {  # run a noisy installer; show its output only when it fails
  local log; log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {  # Debian's own python3 first: every user can run it (a pyenv one under /root is not)
  local py
  for py in /usr/bin/python3 "$(command -v python3)"; do
    if [ -x "$py" ] && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "setup.sh: Python >= 3.11 needed" >&2; exit 2
}

python_env() {  # $1: extras ("" or "[test]"); $2: "editable" (a development tree) or "copy"
  local py; py=$(pick_python)
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$py" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$py" -m venv "$venv"; }
  fi
  quietly "$venv/bin/python" -m pip install -q --upgrade pip
  if [ "$2" = editable ]; then
    quietly "$venv/bin/python" -m pip install -q -e "$root$1"
  else  # a copy in the venv: the unprivileged dashboard process can read it wherever the tree is
    quietly "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$root"
    quietly "$venv/bin/python" -m pip install -q "$root$1"
  fi
}

shared_test_python() {  # a copy in a venv `nobody` can run: the unprivileged dashboard's tests
  local shared=/opt/egresswatch-test/venv py; py=$(pick_python)
  if [ ! -x "$shared/bin/python" ]; then
    mkdir -p "$(dirname "$shared")"
    "$py" -m venv "$shared" 2>/dev/null || { apt_install python3-venv; "$py" -m venv "$shared"; }
  fi
  quietly "$shared/bin/python" -m pip install -q --force-reinstall --no-deps "$root"
  quietly "$shared/bin/python" -m pip install -q "$root"
  export EGRESSWATCH_TEST_SHARED_PYTHON=${EGRESSWATCH_TEST_SHARED_PYTHON:-$shared/bin/python}
}

link_command() {  # so `egresswatch ...` works as printed, from any directory
  local link=${EGRESSWATCH_BIN_DIR:-/usr/local/bin}/egresswatch
  if [ -L "$link" ] || [ ! -e "$link" ]; then ln -sfn "$venv/bin/egresswatch" "$link"; fi
}

start_postgres() {
  cd /  # su postgres cannot enter a root-only work tree
  apt_install postgresql
  local ver; ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_lsclusters -h | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null
  pg_ctlcluster "$ver" main start 2>/dev/null || true
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='egresswatch'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE egresswatch LOGIN PASSWORD 'egresswatch' CREATEDB\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='egresswatch_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O egresswatch egresswatch_test"
  export EGRESSWATCH_TEST_PG_URL=${EGRESSWATCH_TEST_PG_URL:-postgresql+psycopg://egresswatch:egresswatch@127.0.0.1:5432/egresswatch_test}
}

case "$mode" in
  run)
    need_root
    venv=${EGRESSWATCH_VENV:-/opt/egresswatch/venv}
    apt_install libpcap0.8 iproute2
    python_env "" copy
    link_command
    exec "$venv/bin/egresswatch" run "$@"
    ;;
  test)
    need_root
    apt_install libpcap0.8 iproute2 curl dnsutils openssl tcpdump ca-certificates
    apt_install chromium  # tests/web drive Debian's chromium with Playwright (no browser download)
    apt_install dbus libglib2.0-bin  # the desktop alert sink's test: a real session bus, gdbus
    python_env "[test]" editable
    shared_test_python
    link_command
    start_postgres
    cd "$root"
    "$venv/bin/ruff" check .
    "$venv/bin/mypy"
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/setup.sh run|test [args...]" >&2; exit 2 ;;
esac
