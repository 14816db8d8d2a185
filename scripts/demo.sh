#!/usr/bin/env bash
# Runs the example app and the gateway (config/demo.toml, embedded store)
# in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bin portcullis --example upstream_app
mkdir -p var/demo
./target/debug/portcullis check -c config/demo.toml

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

APP_LISTEN=127.0.0.1:3000 GATEWAY_URL=http://127.0.0.1:8080 APP_AUDIENCE=demo-app \
  ./target/debug/examples/upstream_app &
pids+=($!)
./target/debug/portcullis run -c config/demo.toml &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8080/.portcullis/readyz >/dev/null 2>&1 && break
  sleep 0.2
done

session=$(curl -fsS -X POST http://127.0.0.1:9090/admin/sessions \
  -H 'Authorization: Bearer padm_demo_not_a_secret' \
  -d '{"sub":"demo-user","email":"ada@example.com","name":"Ada Lovelace","given_name":"Ada","family_name":"Lovelace","groups":["staff"],"roles":["member"],"tenant":"demo","idp":"demo"}' \
  | sed -E 's/.*"cookie_value":"([^"]+)".*/\1/')

cat <<MSG

  Portcullis is running in front of the example app.

    gateway     http://127.0.0.1:8080/        (every path needs a session)
    public      http://127.0.0.1:8080/public/ (no session needed)
    identity    http://127.0.0.1:8080/.portcullis/jwks.json
    metrics     http://127.0.0.1:9090/metrics

  A demo session was minted through the admin API; see what the app receives:

    curl -b 'portcullis_session=${session}' http://127.0.0.1:8080/

  (In a browser, set that cookie for 127.0.0.1:8080.) Ctrl-C stops both.

MSG
wait -n "${pids[@]}"
