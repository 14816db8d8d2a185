#!/usr/bin/env bash
# `make bench`: what a request through Portcullis costs, next to nginx and a
# bare pingora proxy, measured side by side in one run and written to
# BENCHMARKS.md.
#
# Targets, all over keep-alive HTTP/1.1 on 127.0.0.1:
#   A  the app alone (nginx `return 200`)
#   P  a bare pingora 0.9.1 ProxyHttp -> A (benches/bare_proxy.rs)
#   B  Portcullis, public path -> A
#   C  Portcullis, signed-in path (session + JWT + plain headers) -> A
#   D  nginx `proxy_pass` (keep-alive upstream) -> A
# Rounds alternate A P B C D, ROUNDS times; the figure is the median. The
# load generator (wrk -t1) runs on core 0, every server on core 1 (taskset),
# each single-threaded. Server CPU per request is the utime+stime the
# servers of a target (proxy and app) spent during the run, over the
# requests wrk counted: req per server CPU-second is what a sidecar's price
# is on a shared machine, and it drifts far less than req/s.
#
#   make bench                       # ROUNDS=5 DURATION=5 CONNS=32
#   ROUNDS=3 DURATION=3 scripts/bench.sh
#   BENCH_SKIP_MICRO=1 ...           # skip the criterion micro-benchmarks
#   BENCH_WRK=0 BENCH_PROFILE=0 ...  # callgrind figures only (comparing commits)
#   BENCH_KEEP=1 ...                 # keep the work directory (logs, callgrind files)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}

need() { command -v "$1" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
need wrk wrk
need nginx nginx-light
need taskset util-linux
need python3 python3
need ab apache2-utils
need valgrind valgrind

cargo build --release --bin portcullis --example bare_proxy 2>&1 | tail -1

work=$(mktemp -d)
pids=()
cleanup() {
  kill -9 "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Core 0 for the load generator, core 1 for the servers (one core machines
# share core 0).
ncpu=$(nproc)
LOAD_CPU=0
SRV_CPU=$(( ncpu > 1 ? 1 : 0 ))
pin() { taskset -c "$1" "${@:2}"; }

A=18430 P=18481 B=18480 D=18482 ADMIN=18490
for port in $A $P $B $D $ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "bench: port $port is in use; stop what listens there first" >&2
    exit 1
  fi
done

# --- nginx: the app (A) and the nginx proxy (D), one process each ---------
mkdir -p "$work/nginx"
nginx_conf() { # name, server block
  cat > "$work/nginx/$1.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/$1.err warn;
pid $work/nginx/$1.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/$1.body;
  proxy_temp_path $work/nginx/$1.proxy;
  fastcgi_temp_path $work/nginx/$1.fcgi;
  uwsgi_temp_path $work/nginx/$1.uwsgi;
  scgi_temp_path $work/nginx/$1.scgi;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf app "server { listen 127.0.0.1:$A; location / { return 200 \"ok\n\"; } }"
# D does what Portcullis does on every request besides identity: the
# X-Forwarded-* headers and an access line per request, buffered as ours is
# (4 KiB, flushed every 100 ms).
nginx_conf proxy "upstream app { server 127.0.0.1:$A; keepalive 128; }
  server { listen 127.0.0.1:$D;
    access_log $work/nginx/proxy.access combined buffer=4k flush=100ms;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host; } }"
taskset -c $SRV_CPU nginx -c "$work/nginx/app.conf" & pids+=($!); PID_A=$!
taskset -c $SRV_CPU nginx -c "$work/nginx/proxy.conf" & pids+=($!); PID_D=$!

# --- bare pingora (P) ------------------------------------------------------
BARE_LISTEN=127.0.0.1:$P BARE_UPSTREAM=127.0.0.1:$A BARE_THREADS=1 \
  taskset -c $SRV_CPU ./target/release/examples/bare_proxy >"$work/bare.log" 2>&1 & pids+=($!); PID_P=$!

# --- Portcullis (B, C): defaults, one thread, embedded store ---------------
token=padm_bench_$(date +%s)
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
cat > "$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:$B"
public_url = "http://127.0.0.1:$B"
runtime_dir = "$work/run"
threads = 1
[admin]
listen = "127.0.0.1:$ADMIN"
token_hash = "sha256:$hash"
allow_impersonation = true
[upstream]
url = "http://127.0.0.1:$A"
[store]
path = "$work/state"
[identity]
signing_key = "$work/signing.pem"
generate_if_missing = true
audience = "bench-app"
[identity.headers]
enabled = true
[[policy]]
path = "/public/*"
allow = "public"
TOML
taskset -c $SRV_CPU ./target/release/portcullis run -c "$work/gw.toml" >"$work/gw.log" 2>&1 & pids+=($!); PID_G=$!

wait_up() { for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "bench: $1 did not come up" >&2; exit 1; }
wait_up "http://127.0.0.1:$A/"
wait_up "http://127.0.0.1:$D/"
wait_up "http://127.0.0.1:$P/"
wait_up "http://127.0.0.1:$B/.portcullis/healthz"
cookie=$(curl -fsS -X POST "http://127.0.0.1:$ADMIN/admin/sessions" -H "Authorization: Bearer $token" \
  -d '{"sub":"bench","email":"bench@example.com","name":"Bench User","groups":["staff"]}' \
  | sed -E 's/.*"cookie_value":"([^"]+)".*/\1/')
# The signed-in path must really be signed in (else it measures a redirect).
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: portcullis_session=$cookie" "http://127.0.0.1:$B/app/x")
[ "$code" = 200 ] || { echo "bench: signed-in request answered $code" >&2; cat "$work/gw.log" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$B/public/x")
[ "$code" = 200 ] || { echo "bench: public request answered $code" >&2; exit 1; }

# CPU ticks (utime+stime) of a set of pids, all their threads included.
ticks() { local t=0 p; for p in "$@"; do t=$(( t + $(awk '{print $14+$15}' "/proc/$p/stat") )); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# run TARGET URL PIDS... -> appends "target mode rps cpu_us_per_req p50 p99" to results
results="$work/results.tsv"
: > "$results"
run() {
  local target=$1 mode=$2 url=$3; shift 3
  local hdr=()
  [ "$target" = C ] && hdr=(-H "Cookie: portcullis_session=$cookie")
  [ "$mode" = close ] && hdr+=(-H "Connection: close")
  local before after out
  before=$(ticks "$@")
  out=$(pin $LOAD_CPU wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$url")
  after=$(ticks "$@")
  WRK_OUT=$out python3 - "$target" "$mode" "$before" "$after" "$HZ" "$results" <<'PY'
import os, re, sys
target, mode, before, after, hz, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
out = os.environ["WRK_OUT"]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errors = re.search(r"Socket errors: (.*)", out)
dur = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))
unit = re.search(r"requests in ([\d.]+)(m?s)", out).group(2)
dur = dur / 1000 if unit == "ms" else dur
def lat(p):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % p, out)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
cpu_us = (after - before) / hz * 1e6 / max(reqs, 1)
bad = int(non2xx.group(1)) if non2xx else 0
with open(path, "a") as f:
    f.write(f"{target}\t{mode}\t{reqs/dur:.0f}\t{cpu_us:.2f}\t{lat(50):.3f}\t{lat(99):.3f}\t{bad}\n")
PY
}

declare -A NAMES_SHORT=([B]="public path" [C]="signed-in path")
urls() { # target -> url and server pids
  case $1 in
    A) echo "http://127.0.0.1:$A/app/x $PID_A" ;;
    P) echo "http://127.0.0.1:$P/app/x $PID_P $PID_A" ;;
    B) echo "http://127.0.0.1:$B/public/x $PID_G $PID_A" ;;
    C) echo "http://127.0.0.1:$B/app/x $PID_G $PID_A" ;;
    D) echo "http://127.0.0.1:$D/app/x $PID_D $PID_A" ;;
  esac
}

[ "${BENCH_WRK:-1}" = 1 ] || ROUNDS=0
echo "bench: $ROUNDS rounds x 5 targets x ${DURATION}s keep-alive, then new-connection rounds" >&2
for r in $(seq 1 "$ROUNDS"); do
  for t in A P B C D; do
    # shellcheck disable=SC2046
    run "$t" keepalive $(urls "$t")
  done
  echo "bench: round $r done" >&2
done
for r in $(seq 1 $(( (ROUNDS + 1) / 2 ))); do
  for t in A P B C D; do
    # shellcheck disable=SC2046
    run "$t" close $(urls "$t")
  done
done

# Where the gateway's time goes: one more B and C run each under perf
# (call graphs), summarised into the report (BENCH_PROFILE=0 skips it).
profiles="$work/profiles.txt"
: > "$profiles"
if [ "${BENCH_PROFILE:-1}" = 1 ] && command -v perf >/dev/null; then
  for t in B C; do
    read -r url _ <<<"$(urls "$t")"
    hdr=()
    [ "$t" = C ] && hdr=(-H "Cookie: portcullis_session=$cookie")
    perf record -q -F 1999 -g -p "$PID_G" -o "$work/perf.$t.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    perfpid=$!
    taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" "$url" >/dev/null
    wait "$perfpid" || true
    {
      echo "### $t: ${NAMES_SHORT[$t]}"
      echo
      echo '```'
      perf report -i "$work/perf.$t.data" --no-children --sort dso,symbol --percent-limit 1.2 --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | sed -E 's/ +-? +-? *$//' | head -40 || true
      echo '```'
      echo
    } >> "$profiles"
  done
fi

# Instructions per request under callgrind: a figure that neither the
# machine's other load nor frequency scaling moves, for comparing commits.
# Each proxy runs once more under valgrind (P, then the gateway for B and C);
# 300 warm-up requests uninstrumented, then N=3000 counted (ab -k -c8).
instr="$work/instr.tsv"
: > "$instr"
count_instr() { # name port path header -- cmd...
  local name=$1 port=$2 path=$3 header=$4; shift 5
  local out="$work/cg.$name"
  valgrind --tool=callgrind --callgrind-out-file="$out" --instr-atstart=no "$@" >"$work/cg.$name.log" 2>&1 &
  local vp=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$port/.portcullis/healthz" && break; sleep 0.2; done
  ab -q -k -n 300 -c 8 -H "$header" "http://127.0.0.1:$port$path" >/dev/null 2>&1
  callgrind_control -i on "$vp" >/dev/null || true
  ab -q -k -n 3000 -c 8 -H "$header" "http://127.0.0.1:$port$path" >/dev/null 2>&1
  callgrind_control -i off "$vp" >/dev/null || true
  callgrind_control -d "$vp" >/dev/null || true
  sleep 1
  kill -9 "$vp" 2>/dev/null; wait "$vp" 2>/dev/null || true
  local f total
  # (|| true: under pipefail, a reader that stops early SIGPIPEs the writer)
  # (the newest dump, not the .log beside it, which may be written later)
  f=$(ls -t "$out" "$out".[0-9]* 2>/dev/null | head -1 || true)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' || true)
  printf '%s\t%s\n' "$name" "$(( total / 3000 ))" >> "$instr"
}
if [ "${BENCH_CALLGRIND:-1}" = 1 ]; then
  kill -9 "$PID_P" "$PID_G" 2>/dev/null || true
  sleep 0.5
  BARE_LISTEN=127.0.0.1:$P BARE_UPSTREAM=127.0.0.1:$A BARE_THREADS=1 \
    count_instr P "$P" /public/x "X-Bench: 1" -- ./target/release/examples/bare_proxy
  count_instr B "$B" /public/x "X-Bench: 1" -- ./target/release/portcullis run -c "$work/gw.toml"
  count_instr C "$B" /app/x "Cookie: portcullis_session=$cookie" -- ./target/release/portcullis run -c "$work/gw.toml"
fi

# Memory: idle RSS and RSS per cached session of a second gateway
# (scripts/bench_memory.py; SESSIONS=100000 by default, BENCH_MEMORY=0 skips).
memory="$work/memory.tsv"
: > "$memory"
if [ "${BENCH_MEMORY:-1}" = 1 ]; then
  python3 "$ROOT/scripts/bench_memory.py" ./target/release/portcullis "$work/mem" "$A" > "$memory" \
    || echo "bench: memory step failed (see $work/mem/mem-gw.log)" >&2
fi

python3 "$ROOT/scripts/bench_report.py" "$results" "$OUT" \
  --profiles "$profiles" --instr "$instr" --memory "$memory" \
  --rounds "$ROUNDS" --duration "$DURATION" --conns "$CONNS" \
  --pingora "$(grep -A1 'name = "pingora-proxy"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')" \
  --nginx "$(nginx -v 2>&1 | sed 's/.*nginx\///')" \
  --wrk "$(wrk --version 2>&1 | head -1 | awk '{print $2}')" \
  --cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
  --cores "$ncpu" --pinned "$([ "$ncpu" -gt 1 ] && echo yes || echo no)" \
  --commit "$(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
echo "bench: wrote $OUT" >&2
