#!/usr/bin/env python3
"""Time from a SCIM `PATCH active:false` to the account's roles being gone in a real Airflow 3.

    python3 benches/bench_scim_latency.py [--runs 100] [--others 0]

Builds release binaries, starts a private Airflow 3.3.2 on 127.0.0.1 (`airlock-dev airflow-up`)
and `airlock serve` with the SCIM store as its directory (scheduled syncs an hour apart, so
every change is applied by the SCIM trigger), creates a SCIM token, and RUNS times: creates a
user in a granted group through SCIM, waits until Airflow shows the role, then sends Okta's
deactivation (`PATCH {"op":"replace","value":{"active":false}}`) and polls Airflow every 20 ms
until the user holds no role. Prints p50, p90, p99 and max of that last interval.

With --others N, N more people are pushed first (in a group granted Viewer) and provisioned
before the runs, so the instance holds N+ accounts: a SCIM change is applied by a targeted run
that reads only the accounts it touched, so the latency should not grow with N.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIRLOCK = os.path.join(ROOT, "target", "release", "airlock")
DEV = os.path.join(ROOT, "target", "release", "airlock-dev")


def req(method, url, token=None, body=None, ctype="application/json"):
    headers = {"content-type": ctype}
    if token:
        headers["authorization"] = f"Bearer {token}"
    r = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                               headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            text = resp.read()
            try:
                return resp.status, (json.loads(text) if text else None)
            except ValueError:
                return resp.status, text.decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, None
    except urllib.error.URLError:
        return 0, None  # not listening yet


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, check, timeout=60.0, step=0.02):
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(step)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--others", type=int, default=0, help="accounts provisioned before the runs")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "airlock-cli", "-p", "airlock-testkit", "--bins"],
                   cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="airlock-bench-scim-")
    ready = os.path.join(work, "ready")
    dev = subprocess.Popen([DEV, "airflow-up", "--version", "3", "--config-out", os.path.join(work, "dev.toml"),
                            "--ready-file", ready], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    serve = None
    try:
        wait("airflow", lambda: os.path.exists(ready) or dev.poll() is not None, timeout=300, step=0.2)
        if dev.poll() is not None:
            sys.exit(dev.stdout.read())
        base = re.search(r'url = "(http://127\.0\.0\.1:\d+)"', open(os.path.join(work, "dev.toml")).read()).group(1)
        admin_pw = open(os.path.join(work, "airflow-admin.password")).read().strip()
        with open(os.path.join(work, "airlock.toml"), "w") as f:
            f.write('policy = "policy.toml"\n[store]\nurl = "sqlite://airlock.db"\n[directory]\nkind = "scim"\n'
                    '[serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\n'
                    f'[instances.local]\nurl = "{base}"\nusername = "admin"\n'
                    'password = { file = "airflow-admin.password" }\n')
        with open(os.path.join(work, "policy.toml"), "w") as f:
            f.write('[[grants]]\ngroup = "eng"\nroles = ["Op"]\n[[grants]]\ngroup = "others"\nroles = ["Viewer"]\n[safety]\nmax_deprovisions = 1000\n'
                    'max_deprovision_fraction = 1.0\nmin_directory_ratio = 0.0\n')
        cfg = ["--config", os.path.join(work, "airlock.toml")]
        token = subprocess.run([AIRLOCK, *cfg, "scim", "token", "create", "--client", "bench"], capture_output=True,
                               text=True, check=True).stdout.strip()
        port = free_port()
        serve_log = open(os.path.join(ROOT, "target", "bench-scim-serve.log"), "w")
        serve = subprocess.Popen([AIRLOCK, *cfg, "--log", "warn", "serve", "--listen", f"127.0.0.1:{port}"],
                                 stdout=serve_log, stderr=serve_log)
        wait("serve ready", lambda: req("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=120, step=0.2)
        scim = f"http://127.0.0.1:{port}/scim/v2"
        st, grp = req("POST", f"{scim}/Groups", token, {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                        "displayName": "eng"}, "application/scim+json")
        assert st == 201, st
        _, tok = req("POST", f"{base}/auth/token", body={"username": "admin", "password": admin_pw})
        admin = tok["access_token"]

        def roles(user):
            st, u = req("GET", f"{base}/auth/fab/v1/users/{user}", admin)
            return None if st != 200 else sorted(r["name"] for r in (u.get("roles") or []))

        if args.others:
            ids = []
            for i in range(args.others):
                name = f"other{i:05}@example.com"
                st, u = req("POST", f"{scim}/Users", token, {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                    "emails": [{"value": name, "primary": True}]}, "application/scim+json")
                assert st == 201, st
                ids.append({"value": u["id"]})
            st, _ = req("POST", f"{scim}/Groups", token, {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                          "displayName": "others", "members": ids},
                        "application/scim+json")
            assert st == 201, st
            last = f"other{args.others - 1:05}@example.com"
            took = wait(f"{args.others} accounts in Airflow", lambda: roles(last) == ["Viewer"], timeout=1800,
                        step=1.0)
            print(f"provisioned {args.others} other accounts in {took:.0f} s")

        samples = []
        for i in range(args.runs):
            name = f"lat{i:04}@example.com"
            st, u = req("POST", f"{scim}/Users", token, {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": True,
                "name": {"givenName": "Lat", "familyName": str(i)}, "emails": [{"value": name, "primary": True}]},
                "application/scim+json")
            assert st == 201, st
            st, _ = req("PATCH", f"{scim}/Groups/{grp['id']}", token, {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": u["id"]}]}]},
                "application/scim+json")
            assert st in (200, 204), st
            wait(f"{name} to get Op", lambda: roles(name) == ["Op"])
            t0 = time.monotonic()
            st, _ = req("PATCH", f"{scim}/Users/{u['id']}", token, {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}]}, "application/scim+json")
            assert st in (200, 204), f"deactivation of {name} (run {i}) answered {st}; see target/bench-scim-serve.log"
            wait(f"{name}'s roles to go", lambda: roles(name) == [])
            samples.append(time.monotonic() - t0)
        samples.sort()
        q = lambda p: samples[min(len(samples) - 1, int(round(p * (len(samples) - 1))))]
        print(f"SCIM PATCH active:false -> roles gone in Airflow 3.3.2 ({args.others} other accounts), "
              f"{len(samples)} runs, {os.cpu_count()} CPUs:")
        print(f"  p50 {q(0.50) * 1000:.0f} ms, p90 {q(0.90) * 1000:.0f} ms, p99 {q(0.99) * 1000:.0f} ms, "
              f"max {samples[-1] * 1000:.0f} ms, mean {statistics.mean(samples) * 1000:.0f} ms "
              f"(polled every 20 ms)")
    finally:
        if serve:
            serve.terminate()
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()
        try:
            dev.stdin.close()
            dev.wait(timeout=60)
        except Exception:
            dev.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
