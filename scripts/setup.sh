#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu checkout: virtualenv in .venv, the project and its test
# dependencies, and (for the browser tests) Debian's chromium. Idempotent and quick when
# everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
want_browser=${1:-}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup: Python 3.11 or newer is required (found $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "setup: python3 -m venv failed; installing python3-venv" >&2
    rm -rf .venv
    as_root apt-get install -y -q python3-venv >/dev/null || { echo "setup: install python3-venv and retry" >&2; exit 1; }
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

if [ "$want_browser" = "--browser" ] && ! command -v chromium >/dev/null; then
  echo "setup: installing Debian's chromium for the browser tests" >&2
  as_root apt-get install -y -q chromium >/dev/null 2>&1 \
    || { as_root apt-get update -q >/dev/null 2>&1 && as_root apt-get install -y -q chromium >/dev/null; } \
    || echo "setup: could not install chromium; browser tests will fail (install the 'chromium' package)" >&2
fi
