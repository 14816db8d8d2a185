#!/usr/bin/env python3
"""Memory of a running gateway (issue 11's memory targets), printed as one
TSV line per figure: name, value, unit.

- idle: RSS of a freshly started gateway (release binary, embedded store,
  one worker thread) after a few requests, before any session exists;
- per_session: RSS growth per *cached* session, over SESSIONS (default
  100,000) sessions each minted through the admin API and then used once
  on the signed-in path (which is what puts it in the session cache, JWT
  minted and kept), divided by SESSIONS.

Usage: bench_memory.py PORTCULLIS_BINARY WORKDIR UPSTREAM_PORT
(scripts/bench.sh runs it with nginx's app as the upstream). RSS is VmRSS
from /proc; glibc keeps freed memory, so the figure is what an operator's
`kubectl top` sees, not a heap count."""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time

SESSIONS = int(os.environ.get("SESSIONS", "100000"))
PORT, ADMIN = 18580, 18590


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_up(port, path):
    for _ in range(400):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} did not come up")


def main():
    binary, work, upstream = sys.argv[1], sys.argv[2], int(sys.argv[3])
    token = f"padm_mem_{int(time.time())}"
    digest = hashlib.sha256(token.encode()).hexdigest()
    os.makedirs(work, exist_ok=True)
    cfg = f"{work}/mem.toml"
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{PORT}"
public_url = "http://127.0.0.1:{PORT}"
runtime_dir = "{work}/mem-run"
threads = 1
[admin]
listen = "127.0.0.1:{ADMIN}"
token_hash = "sha256:{digest}"
allow_impersonation = true
[upstream]
url = "http://127.0.0.1:{upstream}"
[store]
path = "{work}/mem-state"
[identity]
signing_key = "{work}/mem-signing.pem"
generate_if_missing = true
audience = "bench-app"
[identity.headers]
enabled = true
""")
    log = open(f"{work}/mem-gw.log", "w")
    gw = subprocess.Popen([binary, "run", "-c", cfg], stdout=log, stderr=log)
    try:
        wait_up(PORT, "/.portcullis/healthz")
        for _ in range(20):
            wait_up(PORT, "/.portcullis/healthz")
        time.sleep(1)
        idle = rss_kb(gw.pid)
        print(f"idle\t{idle / 1024:.1f}\tMB", flush=True)

        # Four keep-alive clients, each minting and then using its share.
        errors = []

        def worker(n, cookies):
            a = http.client.HTTPConnection("127.0.0.1", ADMIN, timeout=30)
            g = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            for i in range(n):
                body = json.dumps({"sub": f"user-{threading.get_ident()}-{i}",
                                   "email": f"u{i}@example.com", "name": "Memory User",
                                   "groups": ["staff", "engineering"]})
                a.request("POST", "/admin/sessions", body,
                          {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                r = a.getresponse()
                data = r.read()
                if r.status not in (200, 201):
                    errors.append(f"admin answered {r.status}: {data[:200]!r}")
                    return
                cookies.append(json.loads(data)["cookie_value"])
            for c in cookies:
                g.request("GET", "/app/x", headers={"Cookie": f"portcullis_session={c}"})
                r = g.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(f"signed-in request answered {r.status}")
                    return

        before = rss_kb(gw.pid)
        shares = [SESSIONS // 4 + (1 if i < SESSIONS % 4 else 0) for i in range(4)]
        lists = [[] for _ in shares]
        threads = [threading.Thread(target=worker, args=(n, l)) for n, l in zip(shares, lists)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(errors[0])
        time.sleep(1)
        after = rss_kb(gw.pid)
        print(f"sessions\t{SESSIONS}\tcount", flush=True)
        print(f"with_sessions\t{after / 1024:.1f}\tMB", flush=True)
        print(f"per_session\t{(after - before) * 1024 / SESSIONS:.0f}\tbytes", flush=True)
    finally:
        gw.kill()
        gw.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
