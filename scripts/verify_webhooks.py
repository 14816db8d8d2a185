#!/usr/bin/env python3
"""Checks Portcullis webhook signatures with an independent implementation:
the `standardwebhooks` PyPI package, not our Rust signer.

Reads JSON Lines on stdin, one delivery per line:

    {"secret": "whsec_...", "headers": {"webhook-id": "...",
     "webhook-timestamp": "...", "webhook-signature": "..."}, "body": "<raw body>"}

and prints one line per input: `ok <webhook-id>` or
`fail <webhook-id> <error>`. Exits 0 only if every line verified (and there
was at least one). The library also enforces the 5-minute timestamp
tolerance, so feed it deliveries signed just now.

Run it with the venv from scripts/pyenv.sh:

    "$(scripts/pyenv.sh)" scripts/verify_webhooks.py < deliveries.jsonl
"""

import json
import sys

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    sys.exit("verify_webhooks: standardwebhooks is missing; run it with \"$(scripts/pyenv.sh)\"")


def check(line: str) -> tuple[bool, str]:
    """Verifies one input line; returns (ok, output line)."""
    webhook_id = "?"
    try:
        item = json.loads(line)
        headers = item["headers"]
        webhook_id = headers.get("webhook-id") or "?"
        # The body is verified as the exact string that was sent: any
        # re-serialisation would change the bytes and break the signature.
        Webhook(item["secret"]).verify(item["body"], headers)
        return True, f"ok {webhook_id}"
    except Exception as e:  # the library raises several kinds; all are failures
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        return False, f"fail {webhook_id} {reason}"


def main() -> int:
    seen = 0
    failed = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        seen += 1
        ok, out = check(line)
        failed += not ok
        print(out, flush=True)
    if seen == 0:
        print("verify_webhooks: no input lines", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
