#!/usr/bin/env python3
"""Runs scim2-tester (an independent RFC 7643/7644 conformance suite) against
a live SCIM base URL and prints one JSON line per check:
{"status": "SUCCESS"|"ERROR"|..., "title", "resource_type", "reason"}.

Usage: scim_conformance.py BASE_URL TOKEN
The caller (tests/scim_conformance.rs) decides what passes; this script only
reports. Exit status: 0 when the suite ran, 2 when it could not run at all.
"""

import json
import sys

import httpx2 as httpx
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, token = sys.argv[1], sys.argv[2]
    http = httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    client = SyncSCIMClient(http)
    # Status codes and content types are part of what is checked.
    client.check_response_status_codes = True
    client.check_response_content_type = True
    results = check_server(client, raise_exceptions=False)
    for r in results:
        print(
            json.dumps(
                {
                    "status": r.status.name,
                    "title": r.title,
                    "resource_type": r.resource_type,
                    "reason": r.reason,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
