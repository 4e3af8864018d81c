"""Runs the scim2-tester conformance checker (python-scim project, from PyPI) against a SCIM
endpoint and prints its totals as one JSON line, then each check that did not pass.

    scim-conformance.py BASE_URL TOKEN

Exit status: 0 when no check failed (status ERROR or CRITICAL), 1 otherwise. The venv that
holds the checker is installed by scripts/install-scim-tester.sh.
"""

import collections
import json
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILED = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    base_url, token = sys.argv[1], sys.argv[2]
    http = httpx2.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    client = SyncSCIMClient(http)
    results = check_server(client)
    totals = collections.Counter(result.status.name for result in results)
    failures = [r for r in results if r.status in FAILED]
    print(json.dumps({"checks": len(results), "failures": len(failures), **totals}))
    for result in results:
        if result.status not in {Status.SUCCESS, Status.SKIPPED}:
            print(
                f"{result.status.name}: {result.title} [{result.resource_type or '-'}]: "
                f"{result.reason}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
