#!/usr/bin/env python3
"""The audit trail at scale, and its delivery to a syslog collector (rsyslog over TCP).

    python3 benches/bench_audit.py [--store sqlite|postgres] [--events 1000000] [--ops 500]
                                   [--poll-ms 1000,200] [--sink-events 200000] [--no-build]

Builds `airlock` and the store's `fill_audit` example (release), then, in a temp dir, on
127.0.0.1 (SQLite by default, or a throw-away database on the PostgreSQL at 127.0.0.1:5432,
trust auth, user postgres, dropped at the end):

  1. fills the trail with EVENTS sealed events (`fill_audit`: a realistic mix, one in 50 with
     hostile characters), timed as "append";
  2. times `airlock audit verify` over them;
  3. times `airlock audit export --format F` for ocsf, jsonl, cef and syslog (to a file in the
     temp dir, removed after): seconds, events/s, bytes and lines written;
  4. starts a private rsyslogd (imtcp on a free port, omfile writing each message with its
     receive time, `%timegenerated:::date-rfc3339%`, microseconds) and `airlock serve` with a
     `kind = "syslog"`, `transport = "tcp"` sink to it, once per `--poll-ms` value
     (`serve.scim_poll_ms`, the delivery loop's poll); makes OPS SCIM writes (`POST
     /scim/v2/Users`, each audited as `scim_user.create`), paced at random 10-30 ms apart so
     they fall at every phase of the poll, and measures for each from the event's `at` (the
     syslog TIMESTAMP) to rsyslog's receive time, and from the client sending the request to
     the receive time;
  5. stops serve, appends SINK_EVENTS more events behind its back (its sink's cursor stays
     where it was), starts serve again and times until rsyslog holds them all: from the
     start of serve, and from the first to the last one received (events/s), with the CPU
     seconds airlock serve and rsyslogd used meanwhile.

Prints one table. No Airflow is needed: the config's one instance points at a closed port
(the SCIM writes' targeted syncs fail, which changes nothing measured here; their audit
events, if any, travel to rsyslog too and are ignored by the measure). Every step is bounded
in time; every process started here is stopped however the script ends. The logs of serve and
rsyslogd are left in target/bench-audit-serve.log and target/bench-audit-rsyslogd.log.
"""

import argparse
import datetime
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
AIRLOCK = os.environ.get("AIRLOCK_BIN", os.path.join(RELEASE, "airlock"))
FILL = os.path.join(RELEASE, "examples", "fill_audit")
RSYSLOGD = "/usr/sbin/rsyslogd"
SINK = "siem"
FORMATS = ["ocsf", "jsonl", "cef", "syslog"]
SCIM_JSON = "application/scim+json"
# rsyslog writes: RECEIVED|<PRI>1 TIMESTAMP HOSTNAME airlock - OPERATION [airlock@32473 seq="N" ...
LINE = re.compile(r'^(\S+)\|<\d+>1 (\S+) \S+ airlock - (\S+) \[airlock@32473 seq="(\d+)"')
TARGET_ID = re.compile(r'\\"id\\":\\"([^\\"]+)\\"')


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


def ms_summary(values):
    ms = [v * 1000 for v in values]
    return f"p50 {pct(ms, 0.5):.0f} ms, p99 {pct(ms, 0.99):.0f} ms, max {max(ms):.0f} ms (n={len(ms)})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts(text):
    """An RFC 3339 time (rsyslog's `+00:00`, airlock's `Z`) as unix seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def cpu_secs(pid):
    """User + system CPU seconds of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_for(what, check, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def run_timed(cmd, timeout, stdout=subprocess.DEVNULL):
    """Runs `cmd` to its end: (wall seconds, CPU seconds of the child, its stdout if piped)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return wall, cpu, out.stdout


class Rsyslog:
    """A private rsyslogd: imtcp on 127.0.0.1:PORT, every message to `out` with its receive time."""

    def __init__(self, work):
        self.dir = os.path.join(work, "rsyslog")
        os.makedirs(self.dir)
        self.port = free_port()
        self.out = os.path.join(self.dir, "received.log")
        conf = os.path.join(self.dir, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write(f'global(workDirectory="{self.dir}")\n'
                    'module(load="imtcp")\n'
                    f'input(type="imtcp" port="{self.port}" address="127.0.0.1")\n'
                    'template(name="bench" type="string" string="%timegenerated:::date-rfc3339%|%rawmsg%\\n")\n'
                    f'*.* action(type="omfile" file="{self.out}" template="bench" flushOnTXEnd="on" '
                    'asyncWriting="off")\n')
        self.log = open(os.path.join(ROOT, "target", "bench-audit-rsyslogd.log"), "w")
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(self.dir, "pid")],
                                     stdout=self.log, stderr=self.log)
        wait_for("rsyslogd to listen", self.listening, 30)
        self.offset = 0
        self.partial = ""

    def listening(self):
        if self.proc.poll() is not None:
            sys.exit(f"rsyslogd exited: see {self.log.name}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def address(self):
        return f"127.0.0.1:{self.port}"

    def new_lines(self):
        """The whole lines written since the last call."""
        try:
            with open(self.out, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        text = self.partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self.partial = lines.pop()
        return lines

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Bench:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.config = os.path.join(work, "airlock.toml")
        self.serve = None
        # Kept after the run (the temp dir is not), for a step that failed.
        self.serve_log = open(os.path.join(ROOT, "target", "bench-audit-serve.log"), "w")
        self.port = free_port()
        self.db = None
        if args.store == "postgres":
            self.db = f"airlock_bench_audit_{os.getpid()}"
            self.psql(f"CREATE DATABASE {self.db}", db="postgres")
            self.url = f"postgres://postgres@127.0.0.1:5432/{self.db}"
        else:
            self.url = f"sqlite://{os.path.join(work, 'airlock.db')}"
        self.rows = []

    def psql(self, sql, db=None):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db or self.db, "-qAtc", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            sys.exit(f"psql {sql!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def row(self, what, figure):
        self.rows.append((what, figure))
        print(f"  {what}: {figure}", flush=True)

    def write_config(self, rsyslog_address, poll_ms):
        with open(os.path.join(self.work, "policy.toml"), "w") as f:
            f.write('[[grants]]\ngroup = "eng"\nroles = ["Viewer"]\n')
        with open(self.config, "w") as f:
            f.write(f'policy = "policy.toml"\n[store]\nurl = "{self.url}"\n'
                    '[directory]\nkind = "scim"\n'
                    f'[serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nscim_poll_ms = {poll_ms}\n'
                    'auth_failure_limit = 10000\n'
                    '[instances.prod]\nurl = "http://127.0.0.1:9"\nusername = "a"\npassword = "b"\n'
                    f'[[audit.sinks]]\nname = "{SINK}"\nkind = "syslog"\ntransport = "tcp"\n'
                    f'address = "{rsyslog_address}"\nhostname = "bench"\nmax_backlog = 100000000\n')

    def cli(self, *args, timeout=120):
        out = subprocess.run([AIRLOCK, "--config", self.config, *args], capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, "AIRLOCK_ACTOR": "operator:bench"})
        if out.returncode != 0:
            sys.exit(f"airlock {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def fill(self, n, label):
        wall, cpu, out = run_timed([FILL, self.url, str(n)], timeout=self.args.step_timeout,
                                   stdout=subprocess.PIPE)
        self.row(f"append {n:,} events ({label}, fill_audit, 10,000 a transaction)",
                 f"{wall:.1f} s, {n / wall:,.0f} events/s, CPU {cpu:.1f} s")
        return int(re.search(r"head seq (\d+)", out).group(1))

    def verify(self, n):
        for run in range(self.args.runs):
            wall, cpu, out = run_timed([AIRLOCK, "--config", self.config, "audit", "verify"],
                                       timeout=self.args.step_timeout, stdout=subprocess.PIPE)
            if f"intact: {n} events" not in out:
                sys.exit(f"audit verify said: {out.strip()}")
            self.row(f"audit verify, {n:,} events (run {run + 1})",
                     f"{wall:.1f} s, {n / wall:,.0f} events/s, CPU {cpu:.1f} s")

    def export(self, n):
        for fmt in self.args.formats.split(","):
            path = os.path.join(self.work, f"export.{fmt}")
            with open(path, "w") as f:
                wall, cpu, _ = run_timed([AIRLOCK, "--config", self.config, "audit", "export", "--format", fmt,
                                          "--hostname", "bench"], timeout=self.args.step_timeout, stdout=f)
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            os.remove(path)
            self.row(f"audit export --format {fmt}, {n:,} events",
                     f"{wall:.1f} s, {n / wall:,.0f} events/s, {size / 1e6:,.0f} MB "
                     f"({size / wall / 1e6:.0f} MB/s), {lines:,} lines, CPU {cpu:.1f} s")

    def cursor(self):
        name = f"sink:{SINK}"
        if self.db:
            got = self.psql(f"SELECT seq FROM delivery_cursors WHERE sink = '{name}'")
            return int(got) if got else None
        with sqlite3.connect(f"file:{self.url[len('sqlite://'):]}?mode=ro", uri=True, timeout=10) as c:
            r = c.execute("SELECT seq FROM delivery_cursors WHERE sink = ?", (name,)).fetchone()
        return r[0] if r else None

    def start_serve(self):
        self.serve = subprocess.Popen([AIRLOCK, "--config", self.config, "--log", "warn", "serve", "--listen",
                                       f"127.0.0.1:{self.port}"], stdout=self.serve_log, stderr=self.serve_log)

        def up():
            if self.serve.poll() is not None:
                sys.exit(f"airlock serve exited ({self.serve.returncode}): see {self.serve_log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/healthz")
                return c.getresponse().status in (200, 503)
            except OSError:
                return False

        wait_for("airlock serve to answer", up, 60)

    def stop_serve(self):
        if self.serve and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait()
        self.serve = None

    def delay(self, rsyslog, poll_ms, token):
        """OPS SCIM creates; from each event's `at`, and from the request, to rsyslog's receive time."""
        self.write_config(rsyslog.address(), poll_ms)
        self.start_serve()
        try:
            wait_for("the sink's cursor", lambda: self.cursor() is not None, 60)
            rsyslog.new_lines()  # whatever came before is not this measure's
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}
            sent = {}
            tag = f"p{poll_ms}-{os.getpid()}"
            for i in range(self.args.ops):
                name = f"bench-{tag}-{i:05}@example.com"
                body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                        "active": True, "emails": [{"value": name, "primary": True}],
                        "name": {"givenName": "Bench", "familyName": f"O'Brien \"{i}\" ]x["}}
                t_sent = time.time()
                conn.request("POST", "/scim/v2/Users", body=json.dumps(body), headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 201:
                    sys.exit(f"SCIM create answered {resp.status}: {data[:500]!r}")
                sent[json.loads(data)["id"]] = t_sent
                time.sleep(random.uniform(0.010, 0.030))
            got = {}

            def all_received():
                for line in rsyslog.new_lines():
                    m = LINE.match(line)
                    if not m or m.group(3) != "scim_user.create":
                        continue
                    t = TARGET_ID.search(line)
                    if t and t.group(1) in sent:
                        got[t.group(1)] = (ts(m.group(1)), ts(m.group(2)))
                return len(got) == len(sent)

            wait_for(f"{len(sent)} scim_user.create events at rsyslog", all_received, 60 + poll_ms / 100, 0.1)
            from_at = [recv - at for recv, at in got.values()]
            from_req = [got[i][0] - t for i, t in sent.items()]
            self.row(f"event at -> rsyslog received, {len(sent)} SCIM creates, scim_poll_ms {poll_ms}",
                     ms_summary(from_at))
            self.row(f"request sent -> rsyslog received, the same, scim_poll_ms {poll_ms}", ms_summary(from_req))
        finally:
            self.stop_serve()

    def throughput(self, rsyslog, n):
        """N events appended while serve is down, then delivered at its start."""
        if self.cursor() is None:
            sys.exit("the sink has no cursor yet (the delay step makes one)")
        head = self.fill(n, "behind serve's back")
        lowest = head - n + 1
        rsyslog.new_lines()
        # The longest poll would only add a pause at the end; the loop pages on without one.
        t0 = time.time()
        self.start_serve()
        first, last, count, nbytes = None, None, 0, 0
        serve_cpu0 = cpu_secs(self.serve.pid)
        rs_cpu0 = cpu_secs(rsyslog.proc.pid)

        def done():
            nonlocal first, last, count, nbytes
            for line in rsyslog.new_lines():
                m = LINE.match(line)
                if not m or not lowest <= int(m.group(4)) <= head:
                    continue
                recv = ts(m.group(1))
                first = recv if first is None else min(first, recv)
                last = recv if last is None else max(last, recv)
                count += 1
                nbytes += len(line.split("|", 1)[1].encode()) + 1
            return count >= n

        try:
            wait_for(f"{n} events at rsyslog", done, self.args.step_timeout, 0.2)
            serve_cpu = cpu_secs(self.serve.pid) - serve_cpu0
            rs_cpu = cpu_secs(rsyslog.proc.pid) - rs_cpu0
        finally:
            self.stop_serve()
        self.row(f"store -> rsyslog TCP, {n:,} events behind the cursor, serve started -> all received",
                 f"{last - t0:.1f} s")
        span = max(last - first, 1e-6)
        self.row(f"store -> rsyslog TCP, first -> last received ({count:,} messages, {nbytes / 1e6:.0f} MB)",
                 f"{span:.1f} s, {count / span:,.0f} events/s, {nbytes / span / 1e6:.1f} MB/s; "
                 f"CPU serve {serve_cpu:.1f} s, rsyslogd {rs_cpu:.1f} s")

    def cleanup(self):
        self.stop_serve()
        if self.db:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {self.db}"],
                           capture_output=True, timeout=60)


def build():
    for cmd in (["cargo", "build", "--release", "-p", "airlock-cli", "--bin", "airlock"],
                ["cargo", "build", "--release", "-p", "airlock-store", "--example", "fill_audit"]):
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd, cwd=ROOT, timeout=3600).returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the trail for verify and export")
    ap.add_argument("--ops", type=int, default=500, help="SCIM writes timed to rsyslog, per poll")
    ap.add_argument("--poll-ms", default="1000,200", help="serve.scim_poll_ms values for the delay, comma-separated")
    ap.add_argument("--sink-events", type=int, default=200_000, help="events delivered for the throughput")
    ap.add_argument("--formats", default=",".join(FORMATS), help="export formats, comma-separated")
    ap.add_argument("--runs", type=int, default=1, help="runs of audit verify")
    ap.add_argument("--step-timeout", type=int, default=900, help="seconds any one step may take")
    ap.add_argument("--no-build", action="store_true", help="use the binaries in target/release as they are")
    args = ap.parse_args()
    if not args.no_build:
        build()
    for path in (AIRLOCK, FILL, RSYSLOGD):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing")

    work = tempfile.mkdtemp(prefix="airlock-bench-audit-")
    bench = Bench(args, work)
    rsyslog = None
    try:
        load = os.getloadavg()[0]
        print(f"audit bench: {args.events:,} events, {args.store} store, {os.cpu_count()} CPUs, "
              f"load {load:.1f}, {datetime.date.today()}", flush=True)
        rsyslog = Rsyslog(work)
        bench.write_config(rsyslog.address(), 1000)
        bench.fill(args.events, "an empty store")
        bench.verify(args.events)
        bench.export(args.events)
        token = bench.cli("scim", "token", "create", "--client", "bench")
        for poll in [int(p) for p in args.poll_ms.split(",") if p]:
            bench.delay(rsyslog, poll, token)
        if args.sink_events:
            bench.throughput(rsyslog, args.sink_events)
    finally:
        bench.cleanup()
        if rsyslog:
            rsyslog.stop()
        shutil.rmtree(work, ignore_errors=True)

    width = max(len(w) for w, _ in bench.rows)
    print(f"\n| {'measure'.ljust(width)} | {args.store}, {os.cpu_count()} cores |")
    print(f"|{'-' * (width + 2)}|---|")
    for what, figure in bench.rows:
        print(f"| {what.ljust(width)} | {figure} |")


if __name__ == "__main__":
    main()
