#!/usr/bin/env bash
# Runs the development IdP, the example app and the gateway (config/demo.toml,
# embedded store) in the foreground; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bin portcullis --example upstream_app --example dev_idp
mkdir -p var/demo

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The IdP writes its (new) signing certificate before the gateway reads it.
rm -f var/demo/dev-idp.pem
DEV_IDP_PORT=8081 DEV_IDP_CERT_OUT=var/demo/dev-idp.pem ./target/debug/examples/dev_idp &
pids+=($!)
for _ in $(seq 1 100); do [ -s var/demo/dev-idp.pem ] && break; sleep 0.1; done

# The same demo-only secret as [[webhook]] in config/demo.toml.
APP_WEBHOOK_SECRET="whsec_euKL1IjBQEKcvVPNvLenko0OOo/T7ITLKiYrzNZeDIw=" \
APP_LISTEN=127.0.0.1:3000 GATEWAY_URL=http://127.0.0.1:8080 APP_AUDIENCE=demo-app \
  ./target/debug/examples/upstream_app &
pids+=($!)
./target/debug/portcullis check -c config/demo.toml
./target/debug/portcullis run -c config/demo.toml &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8080/.portcullis/readyz >/dev/null 2>&1 && break
  sleep 0.2
done

cat <<MSG

  Portcullis is running in front of the example app.

    open        http://127.0.0.1:8080/              sign in through the dev IdP (any name)
    public      http://127.0.0.1:8080/public/       no session needed
    directory   http://127.0.0.1:8080/directory     users the app learnt from webhooks (JIT sign-ins)
    sign out    http://127.0.0.1:8080/.portcullis/logout
    SP metadata http://127.0.0.1:8080/.portcullis/saml/metadata
    JWKS        http://127.0.0.1:8080/.portcullis/jwks.json
    metrics     http://127.0.0.1:9090/metrics

  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
