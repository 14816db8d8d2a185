#!/usr/bin/env python3
"""Writes BENCHMARKS.md from scripts/bench.sh's results (one TSV line per
wrk run: target, mode, req/s, server CPU us/req, p50 ms, p99 ms, non-2xx).
Figures are medians over the alternating rounds; ratios are req per server
CPU-second against the reference the issue names. Every target row says
met or short, never only a number."""

import argparse
import datetime
import statistics
import sys
from collections import defaultdict

NAMES = {
    "A": "app alone (nginx `return 200`)",
    "P": "bare pingora `ProxyHttp` -> app",
    "B": "Portcullis, public path -> app",
    "C": "Portcullis, signed-in (session + JWT + plain headers) -> app",
    "D": "nginx `proxy_pass` (keep-alive upstream, X-Forwarded-*, buffered access log) -> app",
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--profiles", default="")
    ap.add_argument("--instr", default="")
    ap.add_argument("--memory", default="")
    for k in ["rounds", "duration", "conns", "pingora", "nginx", "wrk", "cpu", "cores", "pinned", "commit"]:
        ap.add_argument("--" + k, default="?")
    a = ap.parse_args()

    runs = defaultdict(list)
    for line in open(a.results):
        t, mode, rps, cpu, p50, p99, bad = line.rstrip("\n").split("\t")
        runs[(t, mode)].append((float(rps), float(cpu), float(p50), float(p99), int(bad)))

    def med(t, mode, i):
        v = [r[i] for r in runs.get((t, mode), [])]
        return statistics.median(v) if v else float("nan")

    def per_cpu_s(t, mode="keepalive"):
        return 1e6 / med(t, mode, 1)

    lines = []
    w = lines.append
    w("# BENCHMARKS")
    w("")
    w("Written by `make bench` (scripts/bench.sh, scripts/bench_report.py); do not edit by hand.")
    w("")
    w(f"- When: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {a.commit}")
    w(f"- Machine: {a.cpu}, {a.cores} cores; load generator pinned to core 0 and every server to core 1: {a.pinned}")
    w(f"- Versions: pingora {a.pingora}, nginx {a.nginx}, wrk {a.wrk}")
    w(f"- Method: {a.rounds} alternating rounds of A P B C D, {a.duration} s each, `wrk -t1 -c{a.conns} --latency`;"
      " each server single-threaded; figures are medians. Server CPU is the utime+stime of the"
      " proxy and the app during the run, per request wrk counted. Like the gateway, nginx D sets"
      " X-Forwarded-For/Proto/Host and writes an access line per request (buffer=4k flush=100ms, as"
      " the gateway's access log); P is pingora with nothing added.")
    w("")
    w("## Request path, keep-alive")
    w("")
    w("| target | req/s | server CPU µs/req | req per server CPU-s | vs nginx D | p50 ms | p99 ms | non-2xx |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    d = per_cpu_s("D")
    for t in "APBCD":
        if (t, "keepalive") not in runs:
            continue
        ratio = "—" if t == "A" else f"{per_cpu_s(t) / d:.2f}"
        bad = sum(r[4] for r in runs[(t, "keepalive")])
        w(f"| {t}: {NAMES[t]} | {med(t, 'keepalive', 0):.0f} | {med(t, 'keepalive', 1):.1f} | "
          f"{per_cpu_s(t):.0f} | {ratio} | {med(t, 'keepalive', 2):.3f} | {med(t, 'keepalive', 3):.3f} | {bad} |")
    w("")
    if any(m == "close" for _, m in runs):
        w("## Request path, a new connection per request")
        w("")
        w("| target | req/s | server CPU µs/req | vs nginx D | p99 ms |")
        w("|---|---:|---:|---:|---:|")
        dc = per_cpu_s("D", "close")
        for t in "APBCD":
            if (t, "close") not in runs:
                continue
            ratio = "—" if t == "A" else f"{per_cpu_s(t, 'close') / dc:.2f}"
            w(f"| {t} | {med(t, 'close', 0):.0f} | {med(t, 'close', 1):.1f} | {ratio} | {med(t, 'close', 3):.3f} |")
        w("")

    instr = {}
    if a.instr:
        for line in open(a.instr):
            name, n = line.split()
            instr[name] = int(n)
    if instr:
        w("## Instructions per request (callgrind)")
        w("")
        w("Each proxy under `valgrind --tool=callgrind`, 3000 keep-alive requests after 300 uncounted;"
          " the whole process (every thread) counted. Repeatable to a fraction of a percent, so this is"
          " the figure to compare commits by.")
        w("")
        w("| target | instructions/request | vs bare pingora P |")
        w("|---|---:|---:|")
        for t in "PBC":
            if t in instr:
                w(f"| {t}: {NAMES[t]} | {instr[t]:,} | {instr[t] / instr.get('P', instr[t]):.2f} |")
        w("")
    w("## Targets (issue 11)")
    w("")
    w("| target | figure | met? |")
    w("|---|---|---|")

    def row(what, value, goal):
        w(f"| {what} | {value:.2f} (goal ≥ {goal}) | {'met' if value >= goal else 'short'} |")

    row("signed-in C vs nginx D, req per server CPU-s", per_cpu_s("C") / d, 0.8)
    row("public B vs bare pingora P", per_cpu_s("B") / per_cpu_s("P"), 0.95)
    row("signed-in C vs public B", per_cpu_s("C") / per_cpu_s("B"), 0.95)
    w("| added latency C − A, p99 at half of C's rate | not measured yet: wrk is closed-loop; needs a fixed-rate generator | short |")
    w("| ACS ≥ 2,000 validated logins/s | not in `make bench` yet | short |")
    w("| SCIM on 1M users (lookups ≤ 0.3 ms, pages ≤ 5 ms, POST ≥ 3,000/s) | `cargo bench --bench directory` (BENCH_USERS); not in this report yet | short |")
    mem = {}
    if a.memory:
        for line in open(a.memory):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                mem[parts[0]] = float(parts[1])
    if "idle" in mem:
        w(f"| idle RSS ≤ 30 MB | {mem['idle']:.1f} MB | {'met' if mem['idle'] <= 30 else 'short'} |")
    else:
        w("| idle RSS ≤ 30 MB | not measured in this run | short |")
    if "per_session" in mem:
        n = int(mem.get("sessions", 0))
        w(f"| ≤ 1.5 KB RSS per cached session ({n:,} sessions, JWT minted) | {mem['per_session']:.0f} bytes |"
          f" {'met' if mem['per_session'] <= 1536 else 'short'} |")
    else:
        w("| ≤ 1.5 KB RSS per cached session | not measured in this run | short |")
    w("| webhooks ≥ 5,000 events/s | `cargo bench --bench webhooks`; not in this report yet | short |")
    w("")
    prof = open(a.profiles).read() if a.profiles else ""
    if prof.strip():
        w("## Where the gateway's CPU goes (perf, self time, symbols ≥ 1.2 %)")
        w("")
        w("`perf record -g -p <gateway>` during one extra run of each target.")
        w("")
        w(prof.rstrip())
        w("")
    open(a.out, "w").write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
