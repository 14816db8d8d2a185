#!/usr/bin/env bash
# Installs the system packages Portcullis needs to build and test, once.
# Idempotent: it only calls apt-get when something is missing.
set -euo pipefail

PACKAGES=(curl chromium chromium-driver cmake clang libclang-dev libxml2-dev libxmlsec1-dev xmlsec1 libxslt1-dev libssl-dev pkg-config redis-server python3-venv)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
