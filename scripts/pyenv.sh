#!/usr/bin/env bash
# Ensures a Python venv at target/pyenv with the `standardwebhooks` package
# (the independent Standard Webhooks implementation scripts/verify_webhooks.py
# checks our signatures with) and prints its python's path.
# Idempotent: does nothing when the venv already imports standardwebhooks.
# Needs `python3 -m venv` (Debian: python3-venv, installed by scripts/setup.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=target/pyenv
PY="$VENV/bin/python"

mkdir -p target
# Tests run in parallel: one creates the venv, the others wait for it.
exec 9>target/pyenv.lock
flock 9
if ! "$PY" -c "import standardwebhooks" >/dev/null 2>&1; then
  echo "pyenv: creating $VENV with standardwebhooks" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check "standardwebhooks>=1,<2" >&2
  "$PY" -c "import standardwebhooks"
fi

echo "$PWD/$PY"
