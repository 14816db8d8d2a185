#!/usr/bin/env bash
# SCIM create throughput on the embedded store: POST /Users with distinct
# userNames through a release gateway (one thread, pinned like scripts/
# bench.sh: wrk on core 0, the gateway on core 1), at 1 connection (one
# create in flight: a commit per user, the fsync-bound case) and at CONNS
# (creates in flight together share group commits). Every 201 is on disk.
#
#   scripts/bench_scim.sh [OUT.tsv]     # DURATION=5 CONNS=32
# Prints / writes "conns creates_per_s p50_ms p99_ms server_cpu_us non2xx".
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
OUT=${1:-/dev/stdout}
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
[ -x target/release/portcullis ] || cargo build --release --bin portcullis 2>&1 | tail -1

ncpu=$(nproc)
LOAD_CPU=0
SRV_CPU=$(( ncpu > 1 ? 1 : 0 ))
PORT=18484
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT

token=pscim_bench_$(date +%s%N)
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
cat > "$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
public_url = "http://127.0.0.1:$PORT"
runtime_dir = "$work/run"
threads = 1
[upstream]
url = "http://127.0.0.1:9"
[store]
path = "$work/state"
[identity]
signing_key = "$work/signing.pem"
generate_if_missing = true
audience = "bench-app"
[log]
level = "warn"
access = false
[scim]
base_path = "/scim/v2"
[[scim.client]]
name = "bench"
token_hash = "sha256:$hash"
tenant = "default"
TOML
taskset -c "$SRV_CPU" ./target/release/portcullis run -c "$work/gw.toml" >"$work/gw.log" 2>&1 &
pid=$!
disown "$pid"
for _ in $(seq 1 200); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/.portcullis/healthz" 2>/dev/null && break; sleep 0.05; done

cat > "$work/post.lua" <<'LUA'
local n = 0
local run = os.getenv("BENCH_RUN")
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
request = function()
  n = n + 1
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u' .. run .. "-" .. n ..
    '@example.com","externalId":"x' .. run .. "-" .. n .. '","name":{"givenName":"Bench","familyName":"User"},' ..
    '"emails":[{"value":"u' .. run .. "-" .. n .. '@example.com","type":"work","primary":true}],"active":true}'
  return wrk.format("POST", "/scim/v2/Users",
    {["Content-Type"] = "application/scim+json", ["Authorization"] = auth}, body)
end
LUA

HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
: > "$work/out.tsv"
for c in 1 "$CONNS"; do
  before=$(ticks "$pid")
  out=$(BENCH_RUN="c$c" BENCH_TOKEN="$token" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT")
  after=$(ticks "$pid")
  WRK_OUT=$out python3 - "$c" "$before" "$after" "$HZ" >> "$work/out.tsv" <<'PY'
import os, re, sys
c, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = os.environ["WRK_OUT"]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"requests in ([\d.]+)(m?s)", out)
dur = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
def lat(p):
    v, u = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % p, out).groups()
    return float(v) / 1000 if u == "us" else float(v) * 1000 if u == "s" else float(v)
cpu = (after - before) / hz * 1e6 / max(reqs, 1)
print(f"{c}\t{reqs/dur:.0f}\t{lat(50):.2f}\t{lat(99):.2f}\t{cpu:.0f}\t{int(bad.group(1)) if bad else 0}")
PY
done
# Every counted create is really there (and nothing else).
total=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/scim/v2/Users?startIndex=1&count=1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])')
echo "bench_scim: $total users in the directory after the runs" >&2
cat "$work/out.tsv" > "$OUT"
