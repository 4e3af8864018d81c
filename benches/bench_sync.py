#!/usr/bin/env python3
"""Benchmark `airlock sync` against a real Airflow 3, and time how long a leaver's token lives.

    python3 benches/bench_sync.py [--people 2000] [--groups 50] [--churn 0.10]

Builds release binaries, starts a private Airflow 3.3.2 on 127.0.0.1 (`airlock-dev
airflow-up`), writes a file directory of PEOPLE people in GROUPS groups and a policy mapping
each group to a role, then measures three runs of `airlock sync --stats`:

  1. the first sync (all accounts created),
  2. a no-op re-sync (must make no writes at all),
  3. a re-sync after CHURN of the people changed: a third leave, a third join, a third move
     to another group.

For each: wall time, airlock's own CPU time (user+sys of the airlock process), the HTTP calls
by kind as counted by the connector, and the minimum needed (reads: one call per page of users,
roles and permissions; writes: one per create, role move and profile change, two per
suspension: strip roles, rotate password).

Then the leaver measurement: a person obtains a token (POST /auth/token), is removed from the
directory, `airlock sync` runs, and the token is used every 0.5 s until Airflow refuses it;
reported as seconds from the end of the sync (and from the directory change).

Everything binds 127.0.0.1 and is bounded in time; the server is stopped at the end.
"""

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIRLOCK = os.path.join(ROOT, "target", "release", "airlock")
DEV = os.path.join(ROOT, "target", "release", "airlock-dev")
ROLES = ["Viewer", "User", "Op"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def write_people(path, people):
    with open(path, "w") as f:
        f.write("people:\n")
        for p in people:
            f.write(
                f"  - id: \"{p['id']}\"\n    username: {p['id']}\n    email: {p['id']}@bench.example.com\n"
                f"    first_name: Bench\n    last_name: {p['id']}\n    groups: [{p['group']}]\n"
            )


def run_sync(work, label):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(
        [AIRLOCK, "--config", os.path.join(work, "bench.toml"), "sync", "--stats", "--concurrency", "8",
         "--allow-mass-deprovision"],
        capture_output=True, text=True, timeout=1800,
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{label}: airlock sync failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    stats = {}
    waiting = 0.0
    for line in proc.stderr.splitlines():
        m = re.match(r"^\S+: (\d+) HTTP calls \((.*)\), (\d+) retries, ([\d.]+)s waiting on Airflow", line)
        if m:
            for part in m.group(2).split(", "):
                if "=" in part:
                    k, v = part.rsplit("=", 1)
                    stats[k] = int(v)
            waiting = float(m.group(4))
    return {"label": label, "wall": wall, "cpu": cpu, "calls": stats, "waiting": waiting,
            "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""}


def report(r, minimum):
    total = sum(r["calls"].values())
    writes = sum(v for k, v in r["calls"].items() if k in ("create user", "update user", "delete user",
                                                            "create role", "update role", "delete role"))
    print(f"\n## {r['label']}")
    print(f"  {r['summary']}")
    print(f"  wall {r['wall']:.1f} s; airlock CPU {r['cpu']:.2f} s; requests in flight summed {r['waiting']:.1f} s")
    print(f"  HTTP calls {total}: " + ", ".join(f"{k}={v}" for k, v in sorted(r["calls"].items())))
    print(f"  writes {writes}, minimum writes {minimum['writes']}; reads {total - writes}, minimum reads {minimum['reads']}")


def token(base, user, password):
    req = urllib.request.Request(f"{base}/auth/token", data=json.dumps({"username": user, "password": password}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["access_token"]


def api(base, tok, method, path, body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"authorization": f"Bearer {tok}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@contextlib.contextmanager
def airflow_up(work):
    """A private Airflow 3 on 127.0.0.1 (`airlock-dev airflow-up`), its admin password written
    to WORK/airflow-admin.password; yields (base url, admin password), stops it and removes
    WORK at the end."""
    ready = os.path.join(work, "ready")
    dev = subprocess.Popen([DEV, "airflow-up", "--version", "3", "--config-out", os.path.join(work, "dev.toml"),
                            "--ready-file", ready], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not os.path.exists(ready):
            if dev.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"airlock-dev did not come up:\n{dev.stdout.read()}")
            time.sleep(0.2)
        dev_cfg = open(os.path.join(work, "dev.toml")).read()
        base = re.search(r'url = "(http://127\.0\.0\.1:\d+)"', dev_cfg).group(1)
        yield base, open(os.path.join(work, "airflow-admin.password")).read().strip()
    finally:
        try:
            dev.stdin.close()
        except Exception:
            pass
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--churn", type=float, default=0.10)
    args = ap.parse_args()

    sh(["cargo", "build", "--release", "-q", "-p", "airlock-cli", "-p", "airlock-testkit", "--bins"], cwd=ROOT)
    work = tempfile.mkdtemp(prefix="airlock-bench-sync-")
    with airflow_up(work) as (base, admin_pw):
        with open(os.path.join(work, "bench.toml"), "w") as f:
            f.write(
                'policy = "policy.toml"\n[store]\nurl = "sqlite://airlock.db"\n'
                '[directory]\nkind = "file"\npath = "people.yaml"\n'
                f'[instances.local]\nurl = "{base}"\nusername = "admin"\n'
                'password = { file = "airflow-admin.password" }\nmax_concurrency = 8\n'
            )
        with open(os.path.join(work, "policy.toml"), "w") as f:
            for g in range(args.groups):
                f.write(f'[[grants]]\ngroup = "group-{g:02}"\nroles = ["{ROLES[g % 3]}"]\n\n')
            f.write("[safety]\nmax_deprovisions = 100000\nmax_deprovision_fraction = 1.0\nmin_directory_ratio = 0.1\n")
        people = [{"id": f"p{i:05}", "group": f"group-{i % args.groups:02}"} for i in range(args.people)]
        write_people(os.path.join(work, "people.yaml"), people)

        user_pages = math.ceil((args.people + 1) / 100)
        perm_pages = 2  # 105 permissions on a fresh Airflow 3.3.2, pages of 100
        reads = user_pages + 1 + perm_pages
        first = run_sync(work, f"first sync: {args.people} people in {args.groups} groups (all creates)")
        report(first, {"writes": args.people, "reads": 1 + 1 + perm_pages})
        noop = run_sync(work, "no-op re-sync")
        report(noop, {"writes": 0, "reads": reads})

        n = int(args.people * args.churn)
        third = n // 3
        leavers = people[:third]
        movers = people[third:2 * third]
        for p in movers:
            g = int(p["group"].split("-")[1])
            p["group"] = f"group-{(g + 1) % args.groups:02}"
        joiners = [{"id": f"j{i:05}", "group": f"group-{i % args.groups:02}"} for i in range(n - 2 * third)]
        people = people[third:] + joiners
        write_people(os.path.join(work, "people.yaml"), people)
        # A mover whose new group maps to the same role needs no write.
        role_moves = sum(1 for p in movers if ROLES[int(p["group"].split("-")[1]) % 3] != ROLES[(int(p["group"].split("-")[1]) - 1) % args.groups % 3])
        churn = run_sync(work, f"re-sync after {args.churn:.0%} churn: {len(leavers)} leavers, {len(joiners)} joiners, {len(movers)} movers")
        report(churn, {"writes": len(joiners) + role_moves + 2 * len(leavers), "reads": reads})

        # Leaver: a person with a token issued before they leave.
        victim = people[-1]["id"] + "@bench.example.com"
        admin_tok = token(base, "admin", admin_pw)
        status = api(base, admin_tok, "PATCH", f"/auth/fab/v1/users/{victim}?update_mask=password", {"password": "Bench-leaver-1"})
        assert status == 200, f"could not set the victim's password: {status}"
        tok = token(base, victim, "Bench-leaver-1")
        assert api(base, tok, "GET", "/api/v2/dags?limit=1") == 200, "the victim's token must work before"
        write_people(os.path.join(work, "people.yaml"), people[:-1])
        t_dir = time.monotonic()
        leave = run_sync(work, "leaver sync")
        t_synced = time.monotonic()
        status = 200
        while status == 200 and time.monotonic() - t_synced < 120:
            status = api(base, tok, "GET", "/api/v2/dags?limit=1")
            if status == 200:
                time.sleep(0.5)
        t_dead = time.monotonic()
        print(f"\n## leaver\n  {leave['summary']}")
        print(f"  token refused with {status} {t_dead - t_synced:.1f} s after the sync finished "
              f"({t_dead - t_dir:.1f} s after the directory change; sync took {leave['wall']:.1f} s)")
        print(f"  password login after the sync: {'refused' if _login_fails(base, victim) else 'ACCEPTED'}")


def _login_fails(base, user):
    try:
        token(base, user, "Bench-leaver-1")
        return False
    except urllib.error.HTTPError:
        return True


if __name__ == "__main__":
    main()
