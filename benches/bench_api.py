#!/usr/bin/env python3
"""Latency of the governance API (`/api/v1` in `airlock serve`) over 2,000 access requests.

    python3 benches/bench_api.py [--requests 2000] [--runs 50] [--store sqlite|postgres]

Needs `cargo build --release --bins`. Starts `airlock serve` (its one instance points at a
port nobody listens on: the API needs no Airflow; SQLite store by default, or a fresh
database on the PostgreSQL at 127.0.0.1:5432), a file directory of 100 people (eng) and one
approver (sre), and API tokens made with `airlock api token create`. Then:

  1. creates REQUESTS requests through `POST /api/v1/requests` (people take turns), timing each;
  2. lists them RUNS times each way, timing each call:
     - an auditor token reads all of them, 1,000 a page (2 calls per listing; the time of the
       whole listing is reported, and of one page of 100);
     - a requester reads their own (REQUESTS / 100, spread over the whole table);
     - the approver reads the pending queue (every request goes through the decision function
       for them), 1,000 a page.

Prints p50/p99/max per measure. Everything binds 127.0.0.1 and is bounded in time.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIRLOCK = os.environ.get("AIRLOCK_BIN", os.path.join(ROOT, "target", "release", "airlock"))
PEOPLE = 100


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


def summary(values):
    ms = [v * 1000 for v in values]
    return f"p50 {pct(ms, 0.5):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms (n={len(ms)})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None

    def listing(self, path):
        """Every item of a paged listing; the number of items."""
        n, after = 0, None
        while True:
            sep = "&" if "?" in path else "?"
            status, page = self.call("GET", path + (f"{sep}after={after}" if after else ""))
            assert status == 200, (status, page)
            n += len(page["items"])
            after = page.get("next")
            if not after:
                return n


def cli(work, *args):
    out = subprocess.run([AIRLOCK, "--config", os.path.join(work, "airlock.toml"), *args],
                         env={**os.environ, "AIRLOCK_ACTOR": "operator:bench"},
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        sys.exit(f"airlock {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    if not os.path.exists(AIRLOCK):
        sys.exit(f"{AIRLOCK} is missing: run `cargo build --release --bins` first")

    with tempfile.TemporaryDirectory(prefix="airlock-bench-api-") as work:
        people = "people:\n" + "".join(
            f"  - username: p{i:03}\n    email: p{i:03}@bench.example.com\n    groups: [eng]\n"
            for i in range(PEOPLE)) + "  - username: approver\n    groups: [sre]\n"
        with open(os.path.join(work, "people.yaml"), "w") as f:
            f.write(people)
        with open(os.path.join(work, "policy.toml"), "w") as f:
            f.write('[[access.rules]]\nroles = ["Op"]\napprovers = { groups = ["sre"] }\n'
                    'reason_required = false\npending_for = "7d"\n')
        store = 'url = "sqlite://airlock.db"'
        if args.store == "postgres":
            db = f"airlock_bench_api_{os.getpid()}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db}"],
                           check=True, capture_output=True)
            store = f'url = "postgres://postgres@127.0.0.1:5432/{db}"'
        port = free_port()
        with open(os.path.join(work, "airlock.toml"), "w") as f:
            f.write(f'policy = "policy.toml"\n[store]\n{store}\n'
                    '[directory]\nkind = "file"\npath = "people.yaml"\n'
                    '[serve]\nsync_interval_secs = 3600\nauth_failure_limit = 10000\n'
                    '[instances.prod]\nurl = "http://127.0.0.1:9"\nusername = "a"\npassword = "b"\n'
                    '[api]\n')
        tokens = {}
        for who in [f"p{i:03}" for i in range(PEOPLE)] + ["approver"]:
            scopes = "requests:read,requests:write,requests:decide"
            tokens[who] = cli(work, "api", "token", "create", f"t-{who}", "--scope", scopes, "--person", who)
        auditor = cli(work, "api", "token", "create", "auditor", "--scope", "requests:read")
        log = open(os.path.join(work, "serve.log"), "w")
        serve = subprocess.Popen([AIRLOCK, "--config", os.path.join(work, "airlock.toml"), "--log", "warn",
                                  "serve", "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if Client(port, auditor).call("GET", "/api/v1/me")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("airlock serve did not answer within 60 s")
                time.sleep(0.1)
            print(f"API bench: {args.requests} requests, {args.runs} runs, {args.store} store, "
                  f"{os.cpu_count()} CPUs")

            clients = {who: Client(port, t) for who, t in tokens.items()}
            took = []
            for i in range(args.requests):
                c = clients[f"p{i % PEOPLE:03}"]
                t0 = time.perf_counter()
                status, r = c.call("POST", "/api/v1/requests",
                                   {"roles": ["Op"], "instances": ["prod"], "duration": "1h"})
                took.append(time.perf_counter() - t0)
                assert status == 201, (status, r)
            print(f"create a request: {summary(took)}")

            reader = Client(port, auditor)
            for label, fn, want in [
                ("auditor, one page of 100", lambda: reader.call("GET", "/api/v1/requests?limit=100"), None),
                ("auditor, all 2,000 (1,000 a page)", lambda: reader.listing("/api/v1/requests?limit=1000"),
                 args.requests),
                ("requester, their own (1,000 a page)",
                 lambda: clients["p000"].listing("/api/v1/requests?limit=1000"), args.requests // PEOPLE),
                ("approver, the pending queue (1,000 a page)",
                 lambda: clients["approver"].listing("/api/v1/requests?state=pending&limit=1000"),
                 args.requests),
            ]:
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    got = fn()
                    times.append(time.perf_counter() - t0)
                    if want is not None:
                        assert got == want, (label, got, want)
                print(f"list, {label}: {summary(times)}")
        finally:
            serve.terminate()
            serve.wait(timeout=30)
            if args.store == "postgres":
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE {db}"],
                               capture_output=True)


if __name__ == "__main__":
    main()
