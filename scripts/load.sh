#!/usr/bin/env bash
# Load figure for the hot path: requests/s of an authenticated request
# through the gateway vs. the same request to the app directly.
# Release build, embedded store, all on 127.0.0.1; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
cargo build --release --bin portcullis --example upstream_app
work=$(mktemp -d)
token=padm_load_$(date +%s)
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
cat > "$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:18480"
public_url = "http://127.0.0.1:18480"
runtime_dir = "$work/run"
[admin]
listen = "127.0.0.1:18490"
token_hash = "sha256:$hash"
allow_impersonation = true
[upstream]
url = "http://127.0.0.1:18430"
[store]
path = "$work/state"
[identity]
signing_key = "$work/signing.pem"
generate_if_missing = true
audience = "demo-app"
[log]
level = "warn"
access = false
TOML
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
APP_LISTEN=127.0.0.1:18430 GATEWAY_URL=http://127.0.0.1:18480 ./target/release/examples/upstream_app 2>/dev/null &
pids+=($!)
./target/release/portcullis run -c "$work/gw.toml" 2>"$work/gw.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:18480/.portcullis/healthz >/dev/null 2>&1 && break; sleep 0.1; done
cookie=$(curl -fsS -X POST http://127.0.0.1:18490/admin/sessions -H "Authorization: Bearer $token" \
  -d '{"sub":"load","email":"load@example.com","groups":["staff"]}' | sed -E 's/.*"cookie_value":"([^"]+)".*/\1/')

echo "== app directly (GET /healthz)"
wrk -t2 -c"$CONNS" -d"$DURATION" http://127.0.0.1:18430/healthz | grep -E "Requests/sec|Latency"
echo "== through the gateway, authenticated, JWT forwarded (GET /healthz)"
wrk -t2 -c"$CONNS" -d"$DURATION" -H "Cookie: portcullis_session=$cookie" http://127.0.0.1:18480/healthz \
  | grep -E "Requests/sec|Latency|Non-2xx"
