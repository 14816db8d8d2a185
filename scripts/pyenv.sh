#!/usr/bin/env bash
# Ensures a Python venv at target/pyenv with the independent implementations
# the tests check us against, and prints its python's path:
# - `standardwebhooks`: scripts/verify_webhooks.py checks our signatures;
# - `scim2-tester` (with scim2-client, scim2-models): the RFC 7643/7644
#   conformance suite scripts/scim_conformance.py runs (tests/scim_conformance.rs).
# Versions are pinned so a new release cannot change what the build asserts.
# Idempotent: does nothing when the venv already imports them at these pins.
# Needs `python3 -m venv` (Debian: python3-venv, installed by scripts/setup.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=target/pyenv
PY="$VENV/bin/python"
PINS=(
  "standardwebhooks>=1,<2"
  "scim2-tester==0.5.2"
  "scim2-client==0.13.2"
  "scim2-models==0.12.3"
  "httpx2==2.16.2"
)
STAMP="$VENV/.pins"

mkdir -p target
# Tests run in parallel: one creates the venv, the others wait for it.
exec 9>target/pyenv.lock
flock 9
if [ "$(cat "$STAMP" 2>/dev/null)" != "${PINS[*]}" ] \
  || ! "$PY" -c "import standardwebhooks, scim2_tester, httpx2" >/dev/null 2>&1; then
  echo "pyenv: creating $VENV with ${PINS[*]}" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  "$PY" -c "import standardwebhooks, scim2_tester, httpx2"
  echo "${PINS[*]}" > "$STAMP"
fi

echo "$PWD/$PY"
