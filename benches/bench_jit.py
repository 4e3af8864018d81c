#!/usr/bin/env python3
"""Just-in-time access against a real Airflow 3, through `airlock serve` and the CLI.

    python3 benches/bench_jit.py [--people 1000] [--runs 50] [--burst 1000]

Starts a private Airflow 3.3.2 on 127.0.0.1 (`airlock-dev airflow-up`) and `airlock serve`
(SQLite store, a file directory of PEOPLE people with Viewer from their group, one approver,
`serve.scim_poll_ms = 200`, scheduled syncs hourly so that only grants trigger them), then:

  1. approval to role present, RUNS times: a person asks for Op (`airlock request`), the
     approver approves (`airlock requests approve`); seconds from the approval's return to Op
     in Airflow (read with the admin's token every 50 ms);
  2. end to role gone, RUNS times: RUNS grants, ending 2 s apart; seconds from each grant's
     `expires_at` to Op gone from Airflow;
  3. an issued token after the end: a person with a grant gets a token, the grant ends, and
     the token is used on an Op-only endpoint until Airflow refuses it (403);
  4. BURST grants ending in the same second (auto-approved by a rule with approvals = 0):
     seconds from that second until the last of their roles is gone, and until every one is
     recorded as expired.

Prints p50/p99/max for 1 and 2. Everything binds 127.0.0.1 and is bounded in time.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sync import AIRLOCK, ROOT, airflow_up, api, sh, token  # noqa: E402


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


def summary(values):
    return f"p50 {pct(values, 0.5):.2f} s, p99 {pct(values, 0.99):.2f} s, max {max(values):.2f} s (n={len(values)})"


class Bench:
    def __init__(self, work, base, admin_pw):
        self.work, self.base = work, base
        self.admin = token(base, "admin", admin_pw)

    def cli(self, *args):
        out = subprocess.run([AIRLOCK, "--config", os.path.join(self.work, "airlock.toml"), *args],
                             env={**os.environ, "AIRLOCK_ACTOR": "operator:bench"},
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            sys.exit(f"airlock {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def grant(self, who, role, length, approve=True):
        r = json.loads(self.cli("request", "--as", who, "--role", role, "--instance", "local",
                                "--for", length, "-o", "json"))
        if approve:
            r = json.loads(self.cli("requests", "approve", r["id"], "--as", "approver", "-o", "json"))
        return r

    def roles(self, username):
        import urllib.request
        req = urllib.request.Request(f"{self.base}/auth/fab/v1/users/{username}",
                                     headers={"authorization": f"Bearer {self.admin}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return sorted(x["name"] for x in json.load(r)["roles"])
        except Exception:
            return []

    def all_roles(self):
        import urllib.request
        out, offset = {}, 0
        while True:
            req = urllib.request.Request(f"{self.base}/auth/fab/v1/users?limit=100&offset={offset}",
                                         headers={"authorization": f"Bearer {self.admin}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                page = json.load(r)["users"]
            for u in page:
                out[u["username"]] = {x["name"] for x in u["roles"]}
            if len(page) < 100:
                return out
            offset += 100

    def wait(self, what, check, limit=120, every=0.05):
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > limit:
                sys.exit(f"timed out waiting for {what}")
            time.sleep(every)


def expires(r):
    return datetime.datetime.fromisoformat(r["state"]["expires_at"].replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--burst", type=int, default=1000)
    args = ap.parse_args()
    assert args.people >= 2 * args.runs + 1, "need a person per run and phase"
    sh(["cargo", "build", "--release", "-q", "-p", "airlock-cli", "-p", "airlock-testkit", "--bins"], cwd=ROOT)
    work = tempfile.mkdtemp(prefix="airlock-bench-jit-")
    with airflow_up(work) as (base, admin_pw):
        burst_people = max(args.burst, 1)
        with open(os.path.join(work, "people.yaml"), "w") as f:
            f.write("people:\n  - username: approver\n    email: approver@bench.example.com\n    groups: [sre]\n")
            for i in range(args.people):
                f.write(f"  - username: p{i:05}\n    email: p{i:05}@bench.example.com\n    groups: [eng]\n")
            for i in range(burst_people):
                f.write(f"  - username: b{i:05}\n    email: b{i:05}@bench.example.com\n    groups: [eng]\n")
        with open(os.path.join(work, "policy.toml"), "w") as f:
            f.write('[[grants]]\ngroup = "eng"\nroles = ["Viewer"]\n\n'
                    '[[access.rules]]\nroles = ["Op"]\napprovers = { groups = ["sre"] }\nreason_required = false\n\n'
                    '[[access.rules]]\nroles = ["User"]\napprovals = 0\nreason_required = false\n\n'
                    '[safety]\nmax_deprovisions = 100000\nmax_deprovision_fraction = 1.0\n'
                    'max_deprovisions_per_hour = 0\n')
        with open(os.path.join(work, "airlock.toml"), "w") as f:
            f.write('policy = "policy.toml"\n[store]\nurl = "sqlite://airlock.db"\n'
                    '[directory]\nkind = "file"\npath = "people.yaml"\n'
                    '[serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nscim_poll_ms = 200\n'
                    f'[instances.local]\nurl = "{base}"\nusername = "admin"\n'
                    'password = { file = "airflow-admin.password" }\nmax_concurrency = 8\n')
        log = open(os.path.join(work, "serve.log"), "w")
        serve = subprocess.Popen([AIRLOCK, "--config", os.path.join(work, "airlock.toml"), "--log", "info",
                                  "serve", "--listen", "127.0.0.1:0"], stdout=log, stderr=log)
        try:
            b = Bench(work, base, admin_pw)
            total = args.people + burst_people + 1
            b.wait("the first sync", lambda: len(b.all_roles()) >= total, limit=900, every=1)
            print(f"JIT bench: {args.people + burst_people} people, {args.runs} runs, burst {args.burst}, "
                  f"{os.cpu_count()} CPUs")

            # 1. approval to role present.
            took = []
            for i in range(args.runs):
                who = f"p{i:05}@bench.example.com"
                r = b.grant(f"p{i:05}", "Op", "1h", approve=False)
                json.loads(b.cli("requests", "approve", r["id"], "--as", "approver", "-o", "json"))
                t0 = time.monotonic()
                b.wait(f"Op for {who}", lambda: "Op" in b.roles(who))
                took.append(time.monotonic() - t0)
            print(f"approval to role present: {summary(took)}")

            # 2. end to role gone: grants ending 2 s apart.
            grants = []
            for i in range(args.runs):
                who = f"p{args.runs + i:05}"
                grants.append((who + "@bench.example.com", b.grant(who, "Op", f"{20 + 2 * i}s")))
            late = []
            for who, r in grants:
                end = expires(r)
                b.wait(f"Op for {who}", lambda: "Op" in b.roles(who) or time.time() >= end)
                while time.time() < end:
                    time.sleep(0.01)
                b.wait(f"Op gone for {who}", lambda: "Op" not in b.roles(who))
                late.append(time.time() - end)
            print(f"end to role gone: {summary(late)}")

            # 3. an issued token after the end.
            who = f"p{args.people - 1:05}@bench.example.com"
            assert api(base, b.admin, "PATCH", f"/auth/fab/v1/users/{who}?update_mask=password",
                       {"password": "Bench-jit-1"}) == 200
            r = b.grant(f"p{args.people - 1:05}", "Op", "30s")
            b.wait("Op", lambda: "Op" in b.roles(who))
            tok = token(base, who, "Bench-jit-1")
            assert api(base, tok, "GET", "/api/v2/connections?limit=1") == 200, "Op reads connections"
            end = expires(r)
            b.wait("the token to lose Op", lambda: api(base, tok, "GET", "/api/v2/connections?limit=1") == 403,
                   limit=180, every=0.5)
            print(f"issued token keeps Op for {time.time() - end:.1f} s after the grant's end "
                  f"(Airflow's [fab] cache_ttl is 30 s)")

            # 4. a burst ending in the same second.
            target = int(time.time()) + 120 + args.burst // 20
            names = [f"b{i:05}" for i in range(args.burst)]

            def ask(name):
                # Not just before a second turns: the request must be stored in the second
                # its duration was counted from, so that it ends in `target`.
                while time.time() % 1 > 0.6:
                    time.sleep(0.05)
                return b.grant(name, "User", f"{target - int(time.time())}s", approve=False)

            t_ask = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                made = list(pool.map(ask, names))
            ends = {int(expires(r)) for r in made}
            print(f"  {args.burst} auto-approved requests made in {time.monotonic() - t_ask:.1f} s, "
                  f"ending at {len(ends)} distinct second(s)")
            b.wait("the burst's roles", lambda: sum("User" in v for v in b.all_roles().values()) >= args.burst,
                   limit=max(60, target - time.time() - 5), every=1)
            last_end = max(expires(r) for r in made)
            while time.time() < last_end:
                time.sleep(0.05)
            b.wait("the burst's roles gone", lambda: not any("User" in v for v in b.all_roles().values()),
                   limit=600, every=0.5)
            gone = time.time() - last_end
            b.wait("every expiry on record",
                   lambda: len(json.loads(b.cli("requests", "list", "--state", "expired", "-o", "json")))
                   >= args.burst + args.runs + 1, limit=600, every=1)
            recorded = time.time() - last_end
            print(f"{args.burst} grants ending in the same second: every role gone {gone:.1f} s after, "
                  f"every expiry recorded {recorded:.1f} s after")
        finally:
            serve.terminate()
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()


if __name__ == "__main__":
    main()
