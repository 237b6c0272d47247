"""Server benchmarks of wsgi-wasm against gunicorn and uWSGI, cold start,
density and a CPU profile, written into RESULTS.md and SVG plots.

Usage: bench.py [--smoke] [--out DIR] [--binary PATH] [--sections LIST]
                [--coldstart-variant 'LABEL=FLAGS']...

Everything the figures come from is measured by this script on this machine;
nothing in the generated sections is typed. Sections (all by default):
  servers    the same hello-world Flask and plain-WSGI apps under gunicorn
             (sync workers), uWSGI (python3 plugin) and wsgi-wasm (serve, as
             shipped), at 1, 2 and 4 workers/instances, driven by wrk
  profile    a CPU profile of wsgi-wasm under wrk (serve --pprof)
  coldstart  idle tenant to first response over many tenants, adding an
             instance to a warm tenant, server start with and without the
             compilation cache
  density    RSS as warm Flask tenants are added; MB per tenant, fitted

--smoke runs every section with tiny durations and counts (the Go test
TestHarnessSmoke does this) and, like --out, writes RESULTS.md and the plots
into DIR instead of benchmarks/. Cold-start variants: each adds a row, served
with extra `serve` flags, e.g. --coldstart-variant 'snapshots on=--snapshots'
(also from $WSGI_WASM_BENCH_COLDSTART_VARIANTS, variants separated by ';').
"""
import argparse
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-wasi"))
sys.path.insert(0, HERE)
from gendoc import splice  # noqa: E402
import svgplot  # noqa: E402
from unchecked import unchecked_binary  # noqa: E402

APPS = {"flask": "Flask hello", "plain": "plain WSGI hello"}
UNCHECKED = "wsgi-wasm unchecked"  # Config.unchecked
FLASK_SITE = os.path.join(ROOT, "examples", "tenants", "flask", "site-packages")
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class Config:
    def __init__(self, smoke):
        self.smoke = smoke
        self.workers = [2] if smoke else [1, 2, 4]
        self.duration = 1 if smoke else 10       # seconds measured per cell
        self.warmup = 1 if smoke else 3          # seconds of wrk before measuring
        self.threads, self.conns = 1, 8          # wrk -t -c
        self.cold_tenants = 3 if smoke else 100
        self.add_instance = 2 if smoke else 20
        self.load_runs = (1, 1) if smoke else (2, 3)  # (empty cache, warm cache) server starts
        self.density = [0, 1, 3] if smoke else [0, 10, 20, 40, 80]
        self.profile_seconds = 2 if smoke else 10
        # wsgi-wasm variants, at this instance count only: its access log on;
        # check-ins that only call runtime.Gosched (as before
        # internal/netyield: the network waits while every P runs a guest);
        # one more Go P than cores (GOMAXPROCS), the other way to let HTTP
        # goroutines find a P.
        self.variants_at = 2
        self.variants = ["wsgi-wasm access log", "wsgi-wasm Gosched check-ins"] + (
            [] if smoke else ["wsgi-wasm GOMAXPROCS=%d" % (os.cpu_count() + 1)])
        # At every instance count, a full run also measures the same server
        # built against a wazero without bounds checks (python-wasi/
        # unchecked.py): what the checks cost where users see it. Never a
        # server to ship.
        self.unchecked = not smoke


def log(*a):
    print("[bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            kids.setdefault(int(fields[1]), []).append(int(d))
        except OSError:
            pass
    return kids


def tree(pid):
    """pid and all its descendants."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def memory(pids):
    """Total RSS and PSS of pids, in MiB."""
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / CLK


def busy_seconds():
    """CPU time all processes of the machine used so far (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq + steal) / CLK


class Sampler(threading.Thread):
    """Samples the memory of a process tree until stopped; keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopping = pid, (0.0, 0.0), threading.Event()

    def run(self):
        while True:
            m = memory(tree(self.pid))
            if m[0] > self.peak[0]:
                self.peak = m
            if self.stopping.wait(0.25):
                return

    def stop(self):
        self.stopping.set()
        self.join()
        return self.peak


def http_get(port, path="/", host=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host} if host else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_until(pred, timeout, what, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("bench: %s: the server exited (%s); log: %s" % (what, proc.returncode, proc.log_path))
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("bench: timed out waiting for %s" % what)


def start(cmd, log_path, env=None, cwd=None):
    f = open(log_path, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    f.close()
    p.log_path = log_path
    return p


def stop(p, timeout=15):
    """SIGTERM, then SIGKILL after timeout; the process and only it (its
    children are its own to end, as the servers do on SIGTERM)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree(p.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            p.wait()


def metrics(admin_port):
    _, body = http_get(admin_port, "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# ---------------------------------------------------------------- wrk

def instances(m):
    """Instances a server has made: started fresh plus restored from snapshots."""
    return m.get("wsgi_wasm_instances_started_total", 0) + m.get("wsgi_wasm_instances_restored_total", 0)


def run_wrk(tools, port, seconds, cfg):
    """Runs wrk against 127.0.0.1:port and returns its JSON report, with the
    CPU seconds wrk itself used."""
    cmd = [tools["WRK"], "-t%d" % cfg.threads, "-c%d" % cfg.conns, "-d%ds" % seconds, "--latency",
           "-s", os.path.join(HERE, "wrk_report.lua"), "http://127.0.0.1:%d/" % port]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"^WRKJSON (.*)$", out, re.M)
    if p.returncode != 0 or not m:
        raise SystemExit("bench: wrk failed (%s): %s" % (p.returncode, out[-2000:]))
    r = json.loads(m.group(1))
    r["wrk_cpu"] = usage.ru_utime + usage.ru_stime
    r["pct"] = {p: v for p, v in r.pop("percentiles")}
    return r


# ---------------------------------------------------------------- servers

class Bench:
    def __init__(self, cfg, tools, binary, work):
        self.cfg, self.tools, self.binary, self.work = cfg, tools, binary, work
        self.unchecked_build = None  # (binary, its compilation cache), built by servers()
        self.apps = {}
        for app in APPS:
            d = os.path.join(work, "apps", app)
            shutil.copytree(os.path.join(HERE, "apps", app), d)
            self.apps[app] = d
        self.results = {"servers": [], "commands": {}}

    def native_env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = self.tools["NATIVE_PYTHONPATH"]
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def tenant(self, parent, name, app, hosts, workers, min_warm, extra="", top=""):
        """Writes a tenant folder for app: its code, Flask's packages
        (hard links to the vendored copy) and a tenant.toml (top: lines before
        its tables, extra: lines of its [policy])."""
        d = os.path.join(parent, name)
        shutil.copytree(self.apps[app], d)
        if app == "flask":
            shutil.copytree(FLASK_SITE, os.path.join(d, "site-packages"), copy_function=os.link)
        with open(os.path.join(d, "tenant.toml"), "w") as f:
            f.write('app = "app:app"\nhosts = %s\n%s[policy]\nmax_instances = %d\n%s[pool]\nmin_warm = %d\n' % (
                json.dumps(hosts), top, workers, extra, min_warm))
        return d

    def command(self, server, app, workers, port, admin):
        """The server's command line and environment."""
        d = self.apps[app]
        if server == "gunicorn":
            return [self.tools["PYTHON"], "-m", "gunicorn", "--workers", str(workers), "--bind", "127.0.0.1:%d" % port,
                    "--chdir", d, "app:app"], self.native_env()
        if server == "uWSGI":
            return [self.tools["UWSGI"], "--plugin-dir", self.tools["UWSGI_PLUGIN_DIR"], "--plugin", "python3",
                    "--http-socket", "127.0.0.1:%d" % port, "--master", "--processes", str(workers),
                    "--chdir", d, "--wsgi-file", "app.py", "--callable", "app", "--pythonpath", self.tools["NATIVE_PYTHONPATH"],
                    "--disable-logging", "--die-on-term", "--need-app"], self.native_env()
        tenants = os.path.join(self.work, "tenants-%s-%d-%s" % (app, workers, server.replace(" ", "")))
        if not os.path.isdir(tenants):
            os.makedirs(tenants)
            self.tenant(tenants, app, app, ["*"], workers, workers)
        quiet = [] if "access log" in server else ["--quiet"]
        binary = self.binary
        if server == UNCHECKED:
            binary, cache = self.unchecked_build
            quiet += ["--cache-dir", cache]
        env = dict(os.environ)
        env.pop("GOMAXPROCS", None)
        env.pop("WSGI_WASM_CHECKIN_YIELD", None)
        if "GOMAXPROCS=" in server:
            env["GOMAXPROCS"] = server.split("GOMAXPROCS=")[1]
        if "Gosched check-ins" in server:
            env["WSGI_WASM_CHECKIN_YIELD"] = "gosched"
        return [binary] + quiet + ["serve", "--tenant-dir", tenants, "--bind", "127.0.0.1:%d" % port,
                                   "--admin-bind", "127.0.0.1:%d" % admin], env

    def cell(self, server, app, workers):
        port, admin = free_port(), free_port()
        cmd, env = self.command(server, app, workers, port, admin)
        prefix = ["GOMAXPROCS=" + env["GOMAXPROCS"]] if "GOMAXPROCS" in server else []
        if "WSGI_WASM_CHECKIN_YIELD" in env:
            prefix.append("WSGI_WASM_CHECKIN_YIELD=" + env["WSGI_WASM_CHECKIN_YIELD"])
        self.results["commands"].setdefault(server, prefix + cmd)
        p = start(cmd, os.path.join(self.work, "log-%s-%s-%d.txt" % (server.replace(" ", ""), app, workers)), env=env)
        try:
            wait_until(lambda: http_get(port)[0] == 200, 120, "%s (%s, %d) to answer" % (server, app, workers), p)
            if server.startswith("wsgi-wasm"):
                # min_warm = workers: all instances exist before the warm-up.
                wait_until(lambda: metrics(admin).get("wsgi_wasm_instances_started_total", 0) >= workers, 120,
                           "wsgi-wasm instances", p)
            run_wrk(self.tools, port, self.cfg.warmup, self.cfg)
            pids = tree(p.pid)
            sampler = Sampler(p.pid)
            sampler.start()
            cpu0, busy0, t0 = cpu_seconds(pids), busy_seconds(), time.time()
            r = run_wrk(self.tools, port, self.cfg.duration, self.cfg)
            cpu1, busy1, t1 = cpu_seconds(pids), busy_seconds(), time.time()
            r["rss_mb"], r["pss_mb"] = sampler.stop()
            r["processes"] = len(pids)
        finally:
            stop(p)
        secs = r["duration_us"] / 1e6
        r.update(server=server, app=app, workers=workers, rps=r["requests"] / secs,
                 server_cpu=cpu1 - cpu0, wall=t1 - t0,
                 other_cores=max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - r["wrk_cpu"]) / (t1 - t0))
        r["cpu_us_per_req"] = r["server_cpu"] / max(1, r["requests"]) * 1e6
        log("%-22s %-5s %d: %8.0f req/s  p50 %6.0f us  p99 %6.0f us  rss %5.0f MiB  other load %.2f cores" % (
            server, app, workers, r["rps"], r["pct"][50], r["pct"][99], r["rss_mb"], r["other_cores"]))
        self.results["servers"].append(r)

    def servers(self):
        order = ["gunicorn", "uWSGI", "wsgi-wasm"]
        if self.cfg.unchecked:
            d = os.path.join(self.work, "unchecked")
            os.makedirs(d)
            binary, version = unchecked_binary(d)
            self.unchecked_build = (binary, os.path.join(d, "cache"))
            self.results["unchecked_wazero"] = version
            order.append(UNCHECKED)
        for app in APPS:
            for w in self.cfg.workers:
                # Servers interleaved per cell, so slow drift in the
                # machine's load spreads over all of them.
                for s in order + (self.cfg.variants if w == self.cfg.variants_at else []):
                    self.cell(s, app, w)

    # ------------------------------------------------------------ profile

    def profile(self):
        """CPU profile of wsgi-wasm serving Flask at 2 instances under wrk."""
        workers = 2
        tenants = os.path.join(self.work, "tenants-profile")
        os.makedirs(tenants)
        self.tenant(tenants, "flask", "flask", ["*"], workers, workers)
        port, admin = free_port(), free_port()
        cmd = [self.binary, "--quiet", "serve", "--pprof", "--tenant-dir", tenants, "--bind", "127.0.0.1:%d" % port,
               "--admin-bind", "127.0.0.1:%d" % admin]
        p = start(cmd, os.path.join(self.work, "log-profile.txt"))
        prof = os.path.join(self.work, "cpu.pprof")
        try:
            wait_until(lambda: http_get(port)[0] == 200, 120, "profile server", p)
            wait_until(lambda: metrics(admin).get("wsgi_wasm_instances_started_total", 0) >= workers, 120, "instances", p)
            run_wrk(self.tools, port, self.cfg.warmup, self.cfg)
            box = {}
            t = threading.Thread(target=lambda: box.update(r=run_wrk(self.tools, port, self.cfg.profile_seconds + 2, self.cfg)))
            t.start()
            time.sleep(1)
            status, body = http_get(admin, "/debug/pprof/profile?seconds=%d" % self.cfg.profile_seconds, timeout=120)
            t.join()
            if status != 200:
                raise SystemExit("bench: pprof answered %d" % status)
            with open(prof, "wb") as f:
                f.write(body)
        finally:
            stop(p)
        top = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=25", self.binary, prof],
                             capture_output=True, text=True, check=True).stdout
        cum = subprocess.run(["go", "tool", "pprof", "-top", "-cum", "-nodecount=400", self.binary, prof],
                             capture_output=True, text=True, check=True).stdout
        self.results["profile"] = {"cmd": cmd, "top": parse_pprof(top), "cum": parse_pprof(cum),
                                   "total": re.search(r"Total samples = ([\d.]+)(m?s)", top).groups(),
                                   "rps": box["r"]["requests"] / (box["r"]["duration_us"] / 1e6)}
        log("profile: %s samples" % "".join(self.results["profile"]["total"]))

    # ------------------------------------------------------------ cold start

    def coldstart(self, variants):
        self.results["coldstart"] = [self.coldstart_variant(label, flags, warmup) for label, flags, warmup in variants]
        self.results["load"] = self.interpreter_load()

    def coldstart_variant(self, label, flags, warmup=False):
        """Idle tenants' first responses; with warmup, each tenant.toml sets
        `warmup = "/"`, so its snapshot's write set exists before the first
        request."""
        n, k = self.cfg.cold_tenants, self.cfg.add_instance
        top = 'warmup = "/"\n' if warmup else ""
        snapshots = "--snapshots=false" not in flags
        tenants = tempfile.mkdtemp(dir=self.work, prefix="tenants-cold-")
        # A first tenant, not measured, loads the interpreter module into the
        # engine; the measured tenants are then idle tenants of a running
        # server. max_instances 4 (the default policy) lets a warm tenant
        # add instances.
        self.tenant(tenants, "warmup", "flask", ["warmup.bench"], 4, 0)
        for i in range(n):
            self.tenant(tenants, "c%03d" % i, "flask", ["c%03d.bench" % i], 4, 0, top=top)
        port, admin = free_port(), free_port()
        cmd = [self.binary, "--quiet", "serve", "--tenant-dir", tenants, "--bind", "127.0.0.1:%d" % port,
               "--admin-bind", "127.0.0.1:%d" % admin, "--memory-budget-mb", "65536"] + flags
        p = start(cmd, os.path.join(self.work, "log-cold-%s.txt" % re.sub(r"\W", "_", label)))
        cold, add = [], []
        try:
            wait_until(lambda: http_get(admin, "/readyz")[0] == 200, 300, "cold-start server", p)
            if snapshots:
                # serve opens or builds every tenant's snapshot in the
                # background after load; an operator would run `wsgi-wasm
                # snapshot` ahead instead. Measure once all are ready.
                wait_until(lambda: metrics(admin).get("wsgi_wasm_snapshots_ready", 0) >= n + 1, 1800, "snapshots", p)
            if http_get(port, "/", "warmup.bench")[0] != 200:
                raise SystemExit("bench: warm-up tenant failed")
            started0 = instances(metrics(admin))
            for i in range(n):
                t = time.perf_counter()
                status, body = http_get(port, "/", "c%03d.bench" % i)
                cold.append(time.perf_counter() - t)
                if status != 200 or body != b"Hello from Flask!\n":
                    raise SystemExit("bench: cold tenant c%03d answered %d %r" % (i, status, body[:100]))
            # Adding an instance: a warm tenant's one instance is held by a
            # sleeping request, so the next request needs a new instance.
            holders = []
            for i in range(k):
                host = "c%03d.bench" % i
                h = threading.Thread(target=http_get, args=(port, "/sleep?s=10", host))
                h.start()
                holders.append(h)
                time.sleep(0.2)
                t = time.perf_counter()
                status, _ = http_get(port, "/", host)
                add.append(time.perf_counter() - t)
                if status != 200:
                    raise SystemExit("bench: add-instance request answered %d" % status)
            m = metrics(admin)
            started = instances(m) - started0
            restored = m.get("wsgi_wasm_instances_restored_total", 0)
            for h in holders:
                h.join()
        finally:
            stop(p)
        if started != n + k:
            raise SystemExit("bench: %d instances started for %d cold tenants and %d added instances" % (started, n, k))
        if snapshots and restored < n + k:
            raise SystemExit("bench: only %d of %d instances restored with snapshots on" % (restored, n + k))
        r = {"label": label, "flags": flags, "warmup": warmup, "cmd": cmd, "cold": cold, "add": add}
        log("cold start %s: p50 %.0f ms, p99 %.0f ms over %d; add instance p50 %.0f ms" % (
            label, pct(cold, 50) * 1e3, pct(cold, 99) * 1e3, n, pct(add, 50) * 1e3))
        return r

    def interpreter_load(self):
        """Server start to first response of a plain tenant, with an empty
        compilation cache (every module compiled) and with a warm one."""
        tenants = os.path.join(self.work, "tenants-load")
        os.makedirs(tenants)
        self.tenant(tenants, "plain", "plain", ["*"], 1, 0)
        runs = {"empty": [], "warm": []}
        compile_s = []
        cold_runs, warm_runs = self.cfg.load_runs
        warm_cache = None
        for kind in ["empty"] * cold_runs + ["warm"] * warm_runs:
            if kind == "empty" or warm_cache is None:
                cache = tempfile.mkdtemp(dir=self.work, prefix="cache-")
                os.makedirs(os.path.join(cache, "wazero"))
                warm_cache = cache
            else:
                cache = warm_cache
            port, admin = free_port(), free_port()
            cmd = [self.binary, "--cache-dir", os.path.join(cache, "wazero"), "serve", "--tenant-dir", tenants,
                   "--bind", "127.0.0.1:%d" % port, "--admin-bind", "127.0.0.1:%d" % admin]
            logf = os.path.join(self.work, "log-load-%s-%d.txt" % (kind, len(runs[kind])))
            t = time.perf_counter()
            p = start(cmd, logf)
            try:
                wait_until(lambda: http_get(port, timeout=120)[0] == 200, 300, "server start", p)
                runs[kind].append(time.perf_counter() - t)
            finally:
                stop(p)
            if kind == "empty":
                with open(logf) as f:
                    secs = [float(s) for s in re.findall(r'interpreter compiled.*?seconds=([\d.e+-]+) from_cache=false', f.read())]
                compile_s.append(sum(secs))
        r = {"empty": runs["empty"], "warm": runs["warm"], "compile": compile_s, "cmd": cmd}
        log("server start to first response: empty cache %s s, warm cache %s s" % (
            ", ".join("%.2f" % x for x in runs["empty"]), ", ".join("%.2f" % x for x in runs["warm"])))
        return r

    # ------------------------------------------------------------ density

    def density(self):
        self.results["density"] = [self.density_variant(label, flags) for label, flags in
                                   [("snapshots", []), ("no snapshots", ["--snapshots=false"])]]

    def density_variant(self, label, flags):
        """Server RSS as tenants are added, each with one warm instance that
        has served one request (restored from its snapshot, or started
        fresh)."""
        snapshots = "--snapshots=false" not in flags
        tag = re.sub(r"\W", "_", label)
        tenants = os.path.join(self.work, "tenants-density-" + tag)
        staging = os.path.join(self.work, "staging-density-" + tag)
        os.makedirs(tenants)
        os.makedirs(staging)
        port, admin = free_port(), free_port()
        # The budget is far above what the run needs, so the warm set never
        # evicts (checked below through the evictions counter).
        cmd = [self.binary, "--quiet", "serve", "--tenant-dir", tenants, "--bind", "127.0.0.1:%d" % port,
               "--admin-bind", "127.0.0.1:%d" % admin, "--memory-budget-mb", "65536"] + flags
        p = start(cmd, os.path.join(self.work, "log-density-%s.txt" % tag))
        points = []
        try:
            wait_until(lambda: http_get(admin, "/livez")[0] == 200, 120, "density server", p)
            have = 0
            for target in self.cfg.density:
                for i in range(have, target):
                    # One instance per tenant (max_instances 1), made by its
                    # first request (min_warm 0), after its snapshot is ready.
                    d = self.tenant(staging, "d%03d" % i, "flask", ["d%03d.bench" % i], 1, 0)
                    os.rename(d, os.path.join(tenants, "d%03d" % i))
                if target > have:
                    p.send_signal(signal.SIGHUP)
                if snapshots:
                    wait_until(lambda: metrics(admin).get("wsgi_wasm_snapshots_ready", 0) >= target, 1800, "snapshots", p)
                for i in range(have, target):
                    host = "d%03d.bench" % i
                    wait_until(lambda: http_get(port, "/", host)[0] == 200, 300, "tenant %s" % host, p)
                have = target
                time.sleep(2 if not self.cfg.smoke else 0.5)
                m = metrics(admin)
                rss, pss = memory([p.pid])
                pt = {"tenants": target, "rss_mb": rss, "pss_mb": pss,
                      "warm": m.get("wsgi_wasm_warm_tenants", 0), "linear_mb": m.get("wsgi_wasm_warm_memory_bytes", 0) / 2**20,
                      "evictions": m.get("wsgi_wasm_evictions_total", 0), "started": instances(m),
                      "restored": m.get("wsgi_wasm_instances_restored_total", 0)}
                points.append(pt)
                log("density (%s): %3d tenants  rss %7.0f MiB  charged %6.0f MiB  warm %d  evictions %d  restored %d" % (
                    label, pt["tenants"], pt["rss_mb"], pt["linear_mb"], pt["warm"], pt["evictions"], pt["restored"]))
                # With snapshots, a fresh start builds each snapshot (counted
                # in started) and the tenant's instance is restored.
                if pt["evictions"] or pt["warm"] != target or \
                        pt["restored"] != (target if snapshots else 0) or (not snapshots and pt["started"] != target):
                    raise SystemExit("bench: density run not as intended: %r" % pt)
        finally:
            stop(p)
        return {"label": label, "flags": flags, "points": points, "cmd": cmd}


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def parse_pprof(text):
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\s*([\d.]+)(m?s)?\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)(m?s)?\s+([\d.]+)%\s+(.*)$", line)
        if m:
            f = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            c = float(m.group(5)) / (1000 if m.group(6) == "ms" else 1)
            rows.append({"flat": f, "flat_pct": float(m.group(3)), "cum": c, "cum_pct": float(m.group(7)), "name": m.group(8)})
    return rows


def fit(xs, ys):
    """Least-squares line: slope, intercept, r^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    icpt = my - slope * mx
    ss = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum((y - (icpt + slope * x)) ** 2 for x, y in zip(xs, ys)) / ss if ss else 1.0
    return slope, icpt, r2


# ---------------------------------------------------------------- report

def sh(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def redact(cmd, work):
    """A command line with the run's temporary folder shortened."""
    return sh(cmd).replace(work, "$WORK").replace(ROOT, ".")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or "?"."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def versions(tools, binary):
    def run(cmd, env=None):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60).stdout.strip()
        except OSError as e:
            return "?" + str(e)
    env = dict(os.environ, PYTHONPATH=tools["NATIVE_PYTHONPATH"])
    cpu = cpu_model()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return {
        "machine": "%s, %d cores (%s), %.0f GiB RAM, Linux %s" % (platform.machine(), os.cpu_count(), cpu, mem, platform.release()),
        "os": run(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "wsgi-wasm": "commit %s%s, %s" % (commit, " (with uncommitted changes)" if dirty else "", run(["go", "version"])),
        "python": run([tools["PYTHON"], "-c", "import sys; print(sys.version.split()[0])"]),
        "gunicorn": run([tools["PYTHON"], "-c", "import gunicorn; print(gunicorn.__version__)"], env),
        "flask": run([tools["PYTHON"], "-c", "import flask, werkzeug; print(flask.__version__, 'werkzeug', werkzeug.__version__)"], env),
        "uwsgi": run([tools["UWSGI"], "--version"]),
        "wrk": run(["sh", "-c", "%s -v 2>&1 | head -1" % shlex.quote(tools["WRK"])]),
    }


def reading(res):
    """Sentences computed from the figures: wsgi-wasm against gunicorn per
    cell, the goal (>= 1.0x req/s, p99 no worse), and the machine's noise."""
    by = {(r["server"], r["app"], r["workers"]): r for r in res["servers"]}
    lines, met, cells = [], 0, 0
    for app in APPS:
        parts = []
        for w in sorted({r["workers"] for r in res["servers"]}):
            g, u, x = by.get(("gunicorn", app, w)), by.get(("uWSGI", app, w)), by.get(("wsgi-wasm", app, w))
            if not (g and x):
                continue
            cells += 1
            ok = x["rps"] >= g["rps"] and x["pct"][99] <= g["pct"][99]
            met += ok
            parts.append("%d: %.2fx gunicorn's req/s (p99 %.2fx)%s, %.2fx uWSGI's" % (
                w, x["rps"] / g["rps"], x["pct"][99] / g["pct"][99], " goal met" if ok else "", x["rps"] / u["rps"] if u else float("nan")))
        lines.append("- %s, by instances/workers: %s." % (APPS[app], "; ".join(parts)))
    lines.append("- Goal (at least 1.0x gunicorn's req/s with a p99 no worse, same worker count): met in %d of %d cells." % (met, cells))
    for app in APPS:
        parts = []
        for w in sorted({r["workers"] for r in res["servers"]}):
            g, x = by.get(("gunicorn", app, w)), by.get((UNCHECKED, app, w))
            if g and x:
                parts.append("%d: %.2fx gunicorn's req/s (p99 %.2fx)" % (w, x["rps"] / g["rps"], x["pct"][99] / g["pct"][99]))
        if parts:
            lines.append("- Without wazero's bounds checks (`%s`, wazero %s edited; measurement only, unsafe), %s: %s." % (
                UNCHECKED, res.get("unchecked_wazero", "?"), APPS[app], "; ".join(parts)))
    for r in res["servers"]:
        base = by.get(("wsgi-wasm", r["app"], r["workers"]))
        if r["server"].startswith("wsgi-wasm ") and base:
            lines.append("- %s, %s at %d instances: %.2fx the req/s of wsgi-wasm as run above, p99 %.2fx, p99.9 %.2fx." % (
                r["server"], APPS[r["app"]], r["workers"], r["rps"] / base["rps"], r["pct"][99] / base["pct"][99],
                r["pct"][99.9] / base["pct"][99.9]))
    cpu = [(r["server"], r["app"], r["cpu_us_per_req"]) for r in res["servers"] if r["workers"] == 2 and r["server"] in ("gunicorn", "uWSGI", "wsgi-wasm")]
    if cpu:
        lines.append("- Server CPU per request at 2 workers: " + "; ".join("%s %s %.0f us" % c for c in cpu) + ".")
    other = [r["other_cores"] for r in res["servers"]]
    if other:
        worst = max(other)
        if worst > 0.1:
            lines.append("- Noise: other processes used up to %.2f cores (mean %.2f) during the measured cells: another "
                         "workload shared this 2-core machine, so absolute figures are low and noisy; the CPU per request "
                         "column is the steadier comparison." % (worst, statistics.mean(other)))
        else:
            lines.append("- Noise: other processes used at most %.2f cores during the measured cells." % worst)
    return "\n".join(lines)


def tenants_in_8gib(dv):
    """The density fit's tenants in 8 GiB of RSS (write_report), from a
    density variant's points."""
    fitted = [p for p in dv["points"] if p["tenants"] > 0]
    if len(fitted) < 2:
        return 0
    slope, icpt, _ = fit([p["tenants"] for p in fitted], [p["rss_mb"] for p in fitted])
    return int((8192 - icpt) / slope) if slope > 0 else 0


def before_after(res, base):
    """The section comparing this run with an earlier one (--baseline): the
    wsgi-wasm rows, cold start and density, each before and after."""
    def ratio(a, b):
        return "%.2fx" % (a / b) if b else "-"
    t = ["Before: %s. After: this run. Ratios are after / before; both runs "
         "are on shared machines, so a change within about 10%% is noise (the \"other load\" column tells)." % base["_about"], "",
         "| measure | before | after | ratio |", "| --- | ---: | ---: | ---: |"]
    old = {(r["server"], r["app"], r["workers"]): r for r in base.get("servers", [])}
    for r in res.get("servers", []):
        if not r["server"].startswith("wsgi-wasm"):
            continue
        b = old.get((r["server"], r["app"], r["workers"]))
        if not b:
            continue
        bp = {float(k): v for k, v in b["pct"].items()}
        name = "%s, %s, %d instance%s" % (r["server"], APPS[r["app"]], r["workers"], "" if r["workers"] == 1 else "s")
        t.append("| %s: req/s | %.0f | %.0f | %s |" % (name, b["rps"], r["rps"], ratio(r["rps"], b["rps"])))
        t.append("| %s: p99 ms | %.2f | %.2f | %s |" % (name, bp[99] / 1e3, r["pct"][99] / 1e3, ratio(r["pct"][99], bp[99])))
        t.append("| %s: server CPU us/req | %.0f | %.0f | %s |" % (name, b["cpu_us_per_req"], r["cpu_us_per_req"],
                                                               ratio(r["cpu_us_per_req"], b["cpu_us_per_req"])))
    oldc = {c["label"]: c for c in base.get("coldstart", [])}
    for c in res.get("coldstart", []):
        b = oldc.get(c["label"])
        if b:
            t.append("| cold start, %s: idle tenant to first response p50 ms | %.1f | %.1f | %s |" % (
                c["label"], pct(b["cold"], 50) * 1e3, pct(c["cold"], 50) * 1e3, ratio(pct(c["cold"], 50), pct(b["cold"], 50))))
    oldd = {d["label"]: d for d in base.get("density", [])}
    for d in res.get("density", []):
        b = oldd.get(d["label"])
        if b:
            t.append("| density, %s: warm Flask tenants in 8 GiB | %d | %d | %s |" % (
                d["label"], tenants_in_8gib(b), tenants_in_8gib(d), ratio(tenants_in_8gib(d), tenants_in_8gib(b))))
    return "\n".join(t)


def write_report(res, path, plots_dir, cfg, tools, binary, work, duration, base=None):
    v = res.get("versions") or versions(tools, binary)
    res["versions"] = v
    rel = os.path.relpath(plots_dir, os.path.dirname(path))
    method = ["Run: %s, %s; %s; %s." % (time.strftime("%Y-%m-%d"), "smoke run (tiny durations)" if cfg.smoke else "full run",
                                       v["machine"], v["os"]),
              "", "| component | version |", "| --- | --- |"]
    for k in ["wsgi-wasm", "python", "gunicorn", "flask", "uwsgi", "wrk"]:
        method.append("| %s | %s |" % (k, v[k]))
    method += ["", "Load: `wrk -t%d -c%d -d%ds --latency -s benchmarks/wrk_report.lua` after a %d s warm-up run, per cell%s. "
               "Commands (ports and the temporary folder `$WORK` vary):" % (
                   cfg.threads, cfg.conns, cfg.duration, cfg.warmup,
                   "; the whole harness took %.0f s" % duration if duration else ""), ""]
    for s, cmd in res["commands"].items():
        method.append("- %s: `%s`" % (s, redact(cmd, work)))
    if "coldstart" in res:
        for c in res["coldstart"]:
            method.append("- cold start (%s): `%s`" % (c["label"], redact(c["cmd"], work)))
        method.append("- server start: `%s`" % redact(res["load"]["cmd"], work))
    for dv in res.get("density", []):
        method.append("- density (%s): `%s`" % (dv["label"], redact(dv["cmd"], work)))
    if "profile" in res:
        method.append("- profile: `%s`, then `/debug/pprof/profile` on the admin listener" % redact(res["profile"]["cmd"], work))
    sections = {"bench-method": "\n".join(method)}

    if res["servers"]:
        t = ["| app | workers | server | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | RSS MiB | PSS MiB | server CPU us/req | other load (cores) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in res["servers"]:
            e = r["errors"]
            t.append("| %s | %d | %s | %.0f | %.2f | %.2f | %.2f | %.1f | %d | %.0f | %.0f | %.0f | %.2f |" % (
                r["app"], r["workers"], r["server"], r["rps"], r["pct"][50] / 1e3, r["pct"][99] / 1e3, r["pct"][99.9] / 1e3,
                r["max_us"] / 1e3, e["status"] + e["timeout"] + e["connect"], r["rss_mb"], r["pss_mb"],
                r["cpu_us_per_req"], r["other_cores"]))
        t += ["", "Reading, computed from the table:", "", reading(res), "",
              "![throughput](%s/throughput.svg)" % rel, "", "![latency CDFs](%s/latency-cdf.svg)" % rel]
        sections["bench-servers"] = "\n".join(t)

    if "profile" in res:
        pr = res["profile"]
        total = float(pr["total"][0]) / (1000 if pr["total"][1] == "ms" else 1)
        cum = {r["name"]: r for r in pr["cum"]}

        def share(name):
            return cum[name]["cum"] / total * 100 if name in cum else 0.0
        ext = cum.get("runtime._ExternalCode", {"cum": 0})["cum"] / total * 100
        t = ["%.1f s of samples over %d s (%.2f cores busy) while wrk drove %.0f req/s. Where they fall:" % (
            total, cfg.profile_seconds, total / cfg.profile_seconds, pr["rps"]), "",
             "| part | share of samples |", "| --- | ---: |",
             "| guest code (JIT-compiled CPython, `runtime._ExternalCode`, incl. the epoch thread's libc) | %.1f%% |" % ext,
             "| host: HTTP serving, routing, pool, ABI (`net/http.(*conn).serve`) | %.1f%% |" % share("net/http.(*conn).serve"),
             "| host: of which ABI calls from the guest (`wazero/api.GoModuleFunc.Call`) | %.1f%% |" % share("github.com/tetratelabs/wazero/api.GoModuleFunc.Call"),
             "| host: of which the response write syscall (`syscall.write`) | %.1f%% |" % share("syscall.write"),
             "| Go garbage collector (`runtime.gcBgMarkWorker`) | %.1f%% |" % share("runtime.gcBgMarkWorker"),
             "", "Top entries by flat time (`go tool pprof -top`):", "",
             "| flat s | flat % | cum s | cum % | function |", "| ---: | ---: | ---: | ---: | --- |"]
        for r in pr["top"][:15]:
            t.append("| %.2f | %.1f | %.2f | %.1f | `%s` |" % (r["flat"], r["flat_pct"], r["cum"], r["cum_pct"], r["name"]))
        sections["bench-profile"] = "\n".join(t)

    if "coldstart" in res:
        t = ["| variant | serve flags | idle tenant to first response p50 ms | p99 ms | max ms | tenants | warm tenant adds an instance p50 ms | p99 ms | samples |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in res["coldstart"]:
            t.append("| %s | `%s` | %.1f | %.1f | %.1f | %d | %.1f | %.1f | %d |" % (
                c["label"], sh(c["flags"]) or "(none)", pct(c["cold"], 50) * 1e3, pct(c["cold"], 99) * 1e3,
                max(c["cold"]) * 1e3, len(c["cold"]), pct(c["add"], 50) * 1e3, pct(c["add"], 99) * 1e3, len(c["add"])))
        ld = res["load"]
        t += ["", "| server start to first response (plain tenant) | median s | runs | of which compiling modules, s |",
              "| --- | ---: | ---: | ---: |",
              "| empty compilation cache (fresh `--cache-dir`) | %.2f | %d | %s |" % (
                  statistics.median(ld["empty"]) if ld["empty"] else float("nan"), len(ld["empty"]),
                  "%.2f" % statistics.median(ld["compile"]) if ld["compile"] else "?"),
              "| warm compilation cache (same `--cache-dir` again) | %.2f | %d | 0 |" % (
                  statistics.median(ld["warm"]) if ld["warm"] else float("nan"), len(ld["warm"])),
              "", "![cold start CDF](%s/coldstart-cdf.svg)" % rel]
        sections["bench-coldstart"] = "\n".join(t)

    if "density" in res:
        t = ["| variant | warm Flask tenants | server RSS MiB | PSS MiB | charged by the warm set MiB (metric) | evictions |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
        fits = []
        for dv in res["density"]:
            pts = dv["points"]
            # The first tenant also loads the compiled interpreter into the
            # engine, once per server: the line is fitted to the points with
            # at least one tenant, the marginal cost of one more.
            fitted = [p for p in pts if p["tenants"] > 0]
            xs, ys = [p["tenants"] for p in fitted], [p["rss_mb"] for p in fitted]
            slope, icpt, r2 = fit(xs, ys) if len(fitted) >= 2 else (float("nan"),) * 3
            n8 = int((8192 - icpt) / slope) if slope > 0 else 0
            dv["fit"] = {"slope_mb": slope, "intercept_mb": icpt, "r2": r2, "tenants_in_8gib": n8}
            for p in pts:
                t.append("| %s | %d | %.0f | %.0f | %.0f | %d |" % (dv["label"], p["tenants"], p["rss_mb"], p["pss_mb"], p["linear_mb"], p["evictions"]))
            fits.append("%s: **%.1f MiB per added tenant**, intercept %.0f MiB, r² = %.4f, so **%d tenants in 8 GiB** "
                        "(measured up to %d)" % (dv["label"], slope, icpt, r2, n8, max(xs) if xs else 0))
        t += ["", "Each tenant has one instance, made by its first request and kept warm (with snapshots: restored, "
              "its snapshot verified beforehand). Least-squares lines through the points with at least one tenant "
              "(the intercept is the server with the compiled interpreter loaded), extrapolated to 8 GiB of RSS: "
              + "; ".join(fits) + ".", "", "![density](%s/density.svg)" % rel]
        sections["bench-density"] = "\n".join(t)

    if base:
        sections["bench-before-after"] = before_after(res, base)

    for name, text in sections.items():
        splice(path, name, text)


def plots(res, d):
    servers = []
    for r in res["servers"]:
        if r["server"] not in servers:
            servers.append(r["server"])
    if res["servers"]:
        panels = []
        for app in APPS:
            p = svgplot.Panel("%s: throughput" % APPS[app], "workers / instances", "req/s",
                              xticks=sorted({r["workers"] for r in res["servers"]}))
            for s in servers:
                p.add(s, [(r["workers"], r["rps"]) for r in res["servers"] if r["server"] == s and r["app"] == app],
                      dashed=s not in ("gunicorn", "uWSGI", "wsgi-wasm"))
            panels.append(p)
        svgplot.figure(os.path.join(d, "throughput.svg"), "Requests per second (wrk -t1 -c8, loopback)", panels, 2)
        panels = []
        workers = sorted({r["workers"] for r in res["servers"]})
        for app in APPS:
            for w in workers:
                p = svgplot.Panel("%s, %d workers" % (APPS[app], w), "latency (ms, log)", "percentile", xlog=True, ymin=0, ymax=100)
                for s in servers:
                    for r in res["servers"]:
                        if r["server"] == s and r["app"] == app and r["workers"] == w:
                            p.add(s, sorted((v / 1e3, k) for k, v in r["pct"].items()), dashed=s not in ("gunicorn", "uWSGI", "wsgi-wasm"), markers=False)
                panels.append(p)
        svgplot.figure(os.path.join(d, "latency-cdf.svg"), "Latency CDFs (wrk percentiles)", panels, len(workers))
    if "coldstart" in res:
        p = svgplot.Panel("idle tenant to first response", "ms (log)", "percentile", xlog=True, ymin=0, ymax=100)
        for c in res["coldstart"]:
            s = sorted(c["cold"])
            p.add("cold start: " + c["label"], [(v * 1e3, (i + 1) / len(s) * 100) for i, v in enumerate(s)], markers=False)
            a = sorted(c["add"])
            p.add("add an instance: " + c["label"], [(v * 1e3, (i + 1) / len(a) * 100) for i, v in enumerate(a)], markers=False)
        svgplot.figure(os.path.join(d, "coldstart-cdf.svg"), "Cold start (Flask tenants)", [p], 1, pw=640)
    if "density" in res:
        p = svgplot.Panel("server RSS as warm Flask tenants are added", "tenants", "MiB")
        for dv in res["density"]:
            pts, f = dv["points"], dv["fit"]
            top = max(q["tenants"] for q in pts)
            p.add("measured RSS, " + dv["label"], [(q["tenants"], q["rss_mb"]) for q in pts])
            p.add("fitted line, " + dv["label"], [(0, f["intercept_mb"]), (top, f["intercept_mb"] + f["slope_mb"] * top)],
                  dashed=True, markers=False)
        svgplot.figure(os.path.join(d, "density.svg"), "Density (one warm Flask instance per tenant)", [p], 1, pw=640)


# ---------------------------------------------------------------- main

def install():
    out = subprocess.run(["bash", os.path.join(HERE, "install.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("bench: install.sh failed:\n" + out.stderr[-3000:])
    tools = {}
    for line in out.stdout.splitlines():
        k, _, v = line.partition("=")
        tools[k] = shlex.split(v)[0]
    return tools


def pin_interpreter():
    """Fixes the interpreter folder for every server the harness starts
    (WSGI_WASM_PYTHON_DIR), unless the caller set one: otherwise each serve
    finds it from the working tree's recipe hash, and an edit to a guest
    file during a run would send the next server looking for an
    interpreter that is not built."""
    if os.environ.get("WSGI_WASM_PYTHON_DIR"):
        return
    out = subprocess.run(["bash", os.path.join(ROOT, "python-wasi", "build.sh"), "dir"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("bench: python-wasi/build.sh dir failed (run `make python-wasi`):\n" + out.stderr[-2000:])
    os.environ["WSGI_WASM_PYTHON_DIR"] = out.stdout.strip()


def variants(args):
    vs = [("as shipped (snapshots)", [], False),
          ('as shipped, tenants with `warmup = "/"`', [], True),
          ("no snapshots", ["--snapshots=false"], False)]
    specs = list(args.coldstart_variant or [])
    env = os.environ.get("WSGI_WASM_BENCH_COLDSTART_VARIANTS", "")
    specs += [s for s in env.split(";") if s.strip()]
    for s in specs:
        label, _, flags = s.partition("=")
        vs.append((label.strip(), shlex.split(flags), False))
    return vs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny durations and counts; writes into --out (default: a temp folder)")
    ap.add_argument("--out", help="folder for RESULTS.md, the plots and results.json (default: benchmarks/)")
    ap.add_argument("--binary", help="wsgi-wasm binary (default: build bin/wsgi-wasm)")
    ap.add_argument("--sections", default="servers,profile,coldstart,density")
    ap.add_argument("--from-json", metavar="PATH", help="measure nothing: write the report and plots from a results.json")
    ap.add_argument("--coldstart-variant", action="append", metavar="LABEL=FLAGS",
                    help="another cold-start row, served with these extra serve flags")
    ap.add_argument("--baseline", metavar="PATH", help="an earlier run's results.json (e.g. from git show): "
                    "adds the before-and-after section")
    args = ap.parse_args()
    base = None
    if args.baseline:
        with open(args.baseline) as f:
            base = json.load(f)
        # What the baseline was: the environment may say (a run of an older
        # binary, say); else its file and the version it recorded.
        base["_about"] = os.environ.get("WSGI_WASM_BENCH_BASELINE_ABOUT") or "the run recorded in `%s` (wsgi-wasm %s)" % (
            os.path.basename(args.baseline), base.get("versions", {}).get("wsgi-wasm", "?"))
    cfg = Config(args.smoke)
    began = time.time()
    if args.from_json:
        with open(args.from_json) as f:
            res = json.load(f)
        for r in res["servers"]:
            r["pct"] = {float(k): v for k, v in r["pct"].items()}
        out = args.out or HERE
        os.makedirs(out, exist_ok=True)
        if os.path.abspath(os.path.join(out, "RESULTS.md")) != os.path.join(HERE, "RESULTS.md"):
            shutil.copy(os.path.join(HERE, "RESULTS.md"), os.path.join(out, "RESULTS.md"))
        if "versions" not in res or "work" not in res:
            raise SystemExit("bench: %s is from an older harness (no versions or work folder recorded)" % args.from_json)
        write_report(res, os.path.join(out, "RESULTS.md"), out, cfg, None, "", res["work"], res.get("duration", 0), base)
        plots(res, out)
        return
    if not os.path.isdir(FLASK_SITE):
        raise SystemExit("bench: %s missing: run `make vendor`" % FLASK_SITE)
    pin_interpreter()
    tools = install()
    binary = args.binary
    if not binary:
        binary = os.path.join(ROOT, "bin", "wsgi-wasm")
        subprocess.run(["go", "build", "-o", binary, "./cmd/wsgi-wasm"], cwd=ROOT, check=True)
    out = args.out or (tempfile.mkdtemp(prefix="bench-smoke-") if args.smoke else HERE)
    os.makedirs(out, exist_ok=True)
    results_md = os.path.join(out, "RESULTS.md")
    if os.path.abspath(results_md) != os.path.join(HERE, "RESULTS.md"):
        shutil.copy(os.path.join(HERE, "RESULTS.md"), results_md)
    sections = args.sections.split(",")
    work = tempfile.mkdtemp(prefix="wsgi-wasm-bench-")
    # Every server started keeps its snapshots in the work folder, not in
    # the user's cache.
    os.environ["WSGI_WASM_SNAPSHOT_DIR"] = os.path.join(work, "snapshots")
    b = Bench(cfg, tools, binary, work)
    try:
        if "servers" in sections:
            b.servers()
        if "profile" in sections:
            b.profile()
        if "coldstart" in sections:
            b.coldstart(variants(args))
        if "density" in sections:
            b.density()
        b.results.update(work=work, duration=time.time() - began)
        write_report(b.results, results_md, out, cfg, tools, binary, work, b.results["duration"], base)
        plots(b.results, out)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(b.results, f, indent=1)
    finally:
        if os.environ.get("WSGI_WASM_BENCH_KEEP"):
            log("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    log("wrote %s and plots in %s (%.0f s)" % (results_md, out, time.time() - began))


if __name__ == "__main__":
    main()
