"""Multi-tenant benchmark: N tenants, Zipf traffic at fixed arrival rates,
wsgi-wasm against uWSGI Emperor and gunicorn behind nginx; written into
TENANTS.md, tenants.json and SVG plots (`make bench-tenants`).

Usage: tenants.py [--binary PATH] [--out DIR] [--tenants 100,500,1000]
                  [--rates 100,300] [--duration 20] [--servers LIST]
                  [--budget-tenants N] [--smoke] [--no-warmup]

Tenants are generated from examples/tenants (mostly Flask, some Bottle, plain
WSGI and Django), each its own folder (its code, a tenant.toml naming its host
tNNNN.bench, its site-packages hard-linked to the vendored copy: the server
refuses symbolic links) in ~/.cache/wsgi-wasm/bench-tenants/N. Every server
serves those same folders. Load comes from benchmarks/tenantload (open loop,
Zipf over tenants). Every figure in the generated sections is measured here.

--no-warmup generates the tenants without tenant.toml's warmup, in
bench-tenants/N-nowarmup, and gives wsgi-wasm a snapshot folder of their own
(bench-tenants/N-nowarmup-snapshots) whose write sets are removed before
each start: the load then finds every snapshot built and none with a write
set, as right after a deploy, and the first requests record them.
"""
import argparse
import json
import os
import shutil
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
import bench  # noqa: E402
import svgplot  # noqa: E402
from bench import free_port, http_get, log, memory, metrics, start, stop, tree, wait_until  # noqa: E402

EXAMPLES = os.path.join(ROOT, "examples", "tenants")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "wsgi-wasm")
UWSGI_IDLE = 10  # seconds without a request before a vassal's worker is ended (uWSGI idle mode)


def kind(i):
    """The example a tenant copies, by its rank: 1 in 10 Bottle, 1 in 10
    plain WSGI, 1 in 20 Django, the rest Flask."""
    if i % 10 == 3:
        return "bottle"
    if i % 10 == 7:
        return "hello"
    if i % 20 == 9:
        return "django"
    return "flask"


APP = {"flask": "app:app", "bottle": "app:application", "hello": "app:application",
       "django": "mysite.wsgi:application"}


def host(i):
    return "t%04d.bench" % i


def tenants_dir(parent, n, warmup=True):
    return os.path.join(parent, str(n) if warmup else "%d-nowarmup" % n)


def generate(parent, n, warmup=True):
    """Tenant folders 1..n in parent, made once per n (and warm-up choice)
    and reused."""
    d = tenants_dir(parent, n, warmup)
    if os.path.isfile(os.path.join(d, ".complete")):
        write_tenant_tomls(d, n, warmup)
        return d
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for i in range(1, n + 1):
        k = kind(i)
        t = os.path.join(d, "t%04d" % i)
        src = os.path.join(EXAMPLES, k)
        shutil.copytree(src, t, ignore=shutil.ignore_patterns("site-packages", "tenant.toml", "__pycache__"))
        if os.path.isdir(os.path.join(src, "site-packages")):
            shutil.copytree(os.path.join(src, "site-packages"), os.path.join(t, "site-packages"), copy_function=os.link)
        # Its own code: a line naming the tenant in its entry module.
        entry = os.path.join(t, "mysite", "wsgi.py") if k == "django" else os.path.join(t, "app.py")
        with open(entry, "a") as f:
            f.write('\nTENANT = "t%04d"\n' % i)
    write_tenant_tomls(d, n, warmup)
    open(os.path.join(d, ".complete"), "w").close()
    return d


def tenant_toml(i, warmup=True):
    """A tenant's tenant.toml: its host, no warm instance, and (unless
    warmup is false) the warm-up path that an operator sets so that the
    server records the snapshot's write set when it builds it (tenant.toml's
    warmup), not on the first request of the load."""
    k = kind(i)
    return 'app = "%s"\nhosts = ["%s"]\n%s\n[policy]\npreset = "%s"\n\n[pool]\nmin_warm = 0\n' % (
        APP[k], host(i), 'warmup = "/"\n' if warmup else "", "data" if k == "django" else "default")


def write_tenant_tomls(d, n, warmup=True):
    """(Re)writes every tenant's tenant.toml in d where it differs (the
    sources and their compiled cache stay)."""
    for i in range(1, n + 1):
        path = os.path.join(d, "t%04d" % i, "tenant.toml")
        want = tenant_toml(i, warmup)
        if not os.path.exists(path) or open(path).read() != want:
            with open(path, "w") as f:
                f.write(want)


# ---------------------------------------------------------------- the front

def nginx_conf(work, port, blocks):
    """An nginx configuration of its own (prefix, logs, temp folders in
    work), listening on port, with the given server blocks."""
    os.makedirs(os.path.join(work, "nginx", "tmp"), exist_ok=True)
    path = os.path.join(work, "nginx", "nginx.conf")
    with open(path, "w") as f:
        f.write(("user root;\n" if os.getuid() == 0 else "") + """daemon off;
worker_processes 2;
pid %(w)s/nginx/nginx.pid;
error_log %(w)s/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path %(w)s/nginx/tmp/body;
  proxy_temp_path %(w)s/nginx/tmp/proxy;
  fastcgi_temp_path %(w)s/nginx/tmp/fastcgi;
  uwsgi_temp_path %(w)s/nginx/tmp/uwsgi;
  scgi_temp_path %(w)s/nginx/tmp/scgi;
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 64;
  keepalive_requests 100000;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_read_timeout 60s;
  uwsgi_read_timeout 60s;
  server { listen 127.0.0.1:%(p)d default_server; return 404; }
%(b)s
}
""" % {"w": work, "p": port, "b": "\n".join(blocks)})
    return path


UWSGI_PARAMS = " ".join("uwsgi_param %s %s;" % kv for kv in [
    ("QUERY_STRING", "$query_string"), ("REQUEST_METHOD", "$request_method"), ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"), ("REQUEST_URI", "$request_uri"), ("PATH_INFO", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"), ("SERVER_PROTOCOL", "$server_protocol"), ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"), ("SERVER_PORT", "$server_port"), ("SERVER_NAME", "$server_name")])


# ---------------------------------------------------------------- servers

class Server:
    """One server under test: its processes (a list of Popen), the port the
    load goes to, and what it reports."""

    def __init__(self, name, n, tenants, work, tools, binary, budget_mb, snapshot_dir=None):
        self.name, self.n, self.tenants, self.work, self.tools, self.binary = name, n, tenants, work, tools, binary
        self.budget_mb = budget_mb
        # Without warm-up: snapshots of their own, kept, their write sets not.
        self.snapshot_dir = snapshot_dir
        self.procs, self.admin, self.port = [], None, None
        self.socks = os.path.join(work, "socks")
        os.makedirs(self.socks, exist_ok=True)

    def native_env(self, t):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(self.tenants, "t%04d" % t, "site-packages") + ":" + self.tools["NATIVE_PYTHONPATH"]
        # Bytecode cached outside the tenants' folders (one tree for all:
        # hard-linked files share a path only within a tenant, so each
        # tenant's first import compiles once), as a deployment would keep it.
        env["PYTHONPYCACHEPREFIX"] = os.path.join(CACHE, "bench-tenants", "pycache-native")
        if kind(t) == "django":
            data = os.path.join(self.work, "data", "t%04d" % t)
            os.makedirs(data, exist_ok=True)
            env["WSGI_WASM_DATA_DIR"] = data
        return env

    def nice(self, cmd):
        return ["nice", "-n", "10"] + cmd

    def start_wsgi_wasm(self, port):
        self.admin = free_port()
        cmd = self.nice([self.binary, "--quiet", "serve", "--tenant-dir", self.tenants, "--bind", "127.0.0.1:%d" % port,
                         "--admin-bind", "127.0.0.1:%d" % self.admin, "--data-dir", os.path.join(self.work, "data"),
                         "--memory-budget-mb", str(self.budget_mb), "--access-logfile", ""] +
                        (["--snapshot-dir", self.snapshot_dir] if self.snapshot_dir else []))
        if self.snapshot_dir and os.path.isdir(self.snapshot_dir):
            for f in os.listdir(self.snapshot_dir):
                if f.endswith(".writes"):
                    os.remove(os.path.join(self.snapshot_dir, f))
        self.cmd = cmd
        p = start(cmd, os.path.join(self.work, "log-wsgi-wasm.txt"))
        self.procs.append(p)
        wait_until(lambda: http_get(self.admin, "/readyz")[0] == 200, 600, "wsgi-wasm ready", p)
        # serve opens or builds every snapshot in the background; measure
        # once all exist (an operator runs `wsgi-wasm snapshot` ahead).
        # A tenant that does not load (its .pyc compile past its deadline on
        # a busy machine) never gets one: wait until all are ready or none
        # was added for 2 minutes, and say how many there are.
        last, since = -1, time.time()
        while True:
            ready = metrics(self.admin).get("wsgi_wasm_snapshots_ready", 0)
            if ready >= self.n or time.time() - since > 120:
                break
            if ready != last:
                last, since = ready, time.time()
            time.sleep(1)
        self.snapshots_ready = ready

    def start(self):
        front = free_port()
        if self.name == "wsgi-wasm":
            self.start_wsgi_wasm(front)
            self.port = front
            return
        blocks = []
        if self.name == "wsgi-wasm + nginx":
            back = free_port()
            self.start_wsgi_wasm(back)
            blocks = ["server { listen 127.0.0.1:%d; server_name %s; location / { proxy_pass http://127.0.0.1:%d; } }" % (
                front, " ".join(host(i) for i in range(1, self.n + 1)), back)]
        elif self.name == "uWSGI Emperor":
            vassals = os.path.join(self.work, "vassals")
            os.makedirs(vassals, exist_ok=True)
            for i in range(1, self.n + 1):
                t = os.path.join(self.tenants, "t%04d" % i)
                env = self.native_env(i)
                mod, call = APP[kind(i)].split(":")
                lines = ["[uwsgi]", "plugin-dir = %s" % self.tools["UWSGI_PLUGIN_DIR"], "plugin = python3", "master = true", "processes = 1",
                         "socket = %s/t%04d.sock" % (self.socks, i), "chdir = %s" % t,
                         "module = %s" % mod, "callable = %s" % call,
                         "pythonpath = %s" % env["PYTHONPATH"].split(":")[0],
                         "pythonpath = %s" % self.tools["NATIVE_PYTHONPATH"],
                         # Memory-saving modes: no worker until a request
                         # (cheap), back to none after UWSGI_IDLE s idle
                         # (idle), the app imported by the worker, not the
                         # master (lazy-apps), so an idle vassal holds only
                         # its master.
                         "cheap = true", "idle = %d" % UWSGI_IDLE,
                         "disable-logging = true", "need-app = false"]
                lines.append("env = PYTHONPYCACHEPREFIX=%s" % env["PYTHONPYCACHEPREFIX"])
                if "WSGI_WASM_DATA_DIR" in env:
                    lines.append("env = WSGI_WASM_DATA_DIR=%s" % env["WSGI_WASM_DATA_DIR"])
                with open(os.path.join(vassals, "t%04d.ini" % i), "w") as f:
                    f.write("\n".join(lines) + "\n")
                blocks.append("server { listen 127.0.0.1:%d; server_name %s; location / { %s uwsgi_pass unix:%s/t%04d.sock; } }" % (
                    front, host(i), UWSGI_PARAMS, self.socks, i))
            cmd = self.nice([self.tools["UWSGI"], "--emperor", vassals])
            self.cmd = cmd
            self.procs.append(start(cmd, os.path.join(self.work, "log-uwsgi.txt")))
            wait_until(lambda: all(os.path.exists("%s/t%04d.sock" % (self.socks, i)) for i in range(1, self.n + 1)),
                       600, "uWSGI vassals' sockets", self.procs[-1])
        elif self.name == "gunicorn":
            for i in range(1, self.n + 1):
                t = os.path.join(self.tenants, "t%04d" % i)
                sock = "%s/g%04d.sock" % (self.socks, i)
                cmd = self.nice([self.tools["PYTHON"], "-m", "gunicorn", "--workers", "1", "--bind", "unix:" + sock,
                                 "--chdir", t, APP[kind(i)]])
                self.cmd = cmd
                self.procs.append(start(cmd, os.path.join(self.work, "log-gunicorn-%04d.txt" % i), env=self.native_env(i)))
                blocks.append("server { listen 127.0.0.1:%d; server_name %s; location / { proxy_pass http://unix:%s; } }" % (
                    front, host(i), sock))
            for i, p in enumerate(self.procs, 1):
                wait_until(lambda: os.path.exists("%s/g%04d.sock" % (self.socks, i)), 900, "gunicorn %d" % i, p)
        conf = nginx_conf(self.work, front, blocks)
        self.procs.append(start(self.nice([self.tools["NGINX"], "-e", os.path.join(self.work, "nginx", "error.log"),
                                           "-p", os.path.join(self.work, "nginx"), "-c", conf]),
                                os.path.join(self.work, "log-nginx.txt")))
        wait_until(lambda: http_get(front, "/", host(1))[0] == 200, 120 + self.n, "nginx front", self.procs[-1])
        self.port = front

    def pids(self):
        out = []
        for p in self.procs:
            out += tree(p.pid)
        return out

    def cold_starts(self):
        """Instances or workers made so far."""
        if self.admin:
            m = metrics(self.admin)
            return bench.instances(m)
        if self.name == "uWSGI Emperor":
            with open(os.path.join(self.work, "log-uwsgi.txt"), errors="replace") as f:
                return f.read().count("spawned uWSGI worker")
        if self.name == "gunicorn":
            c = 0
            for i in range(1, self.n + 1):
                with open(os.path.join(self.work, "log-gunicorn-%04d.txt" % i), errors="replace") as f:
                    c += f.read().count("Booting worker")
            return c
        return 0

    def warm(self):
        if self.admin:
            m = metrics(self.admin)
            return m.get("wsgi_wasm_warm_tenants", 0), m.get("wsgi_wasm_evictions_total", 0)
        return None, None

    def stop(self):
        for p in reversed(self.procs):
            stop(p, 60)


def cpu_all(pids, roots):
    """CPU seconds of pids, plus what the roots' reaped children used
    (uWSGI workers that ended when idle)."""
    total = bench.cpu_seconds(pids)
    for r in roots:
        try:
            with open("/proc/%d/stat" % r) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[13]) + int(fields[14])) / bench.CLK
        except OSError:
            pass
    return total


class PSSSampler(threading.Thread):
    """Peak PSS of a server's process trees, sampled every 2 s."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.peak, self.stopping = server, 0.0, threading.Event()

    def run(self):
        while True:
            self.peak = max(self.peak, memory(self.server.pids())[1])
            if self.stopping.wait(2):
                return

    def stop(self):
        self.stopping.set()
        self.join()
        return self.peak


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def load(server, n, rate, duration, out):
    cmd = ["nice", "-n", "10", os.path.join(ROOT, "bin", "tenantload"), "-url", "http://127.0.0.1:%d/" % server.port,
           "-tenants", str(n), "-rate", str(rate), "-duration", "%ds" % duration, "-zipf", "1.1", "-out", out,
           "-seed", str(n * 1000 + rate)]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    rows = []
    with open(out) as f:
        for line in f:
            rank, start_us, lat, status, first, err = line.rstrip("\n").split("\t")
            rows.append((int(rank), int(start_us), int(lat), int(status), first == "1", err))
    return rows, cmd


def cell(server, n, rate, duration, work):
    roots = [p.pid for p in server.procs]
    pids = server.pids()
    cold0 = server.cold_starts()
    cpu0 = cpu_all(pids, roots)
    sampler = PSSSampler(server)
    sampler.start()
    t0 = time.time()
    rows, cmd = load(server, n, rate, duration, os.path.join(work, "load-%s-%d-%d.tsv" % (server.name.replace(" ", ""), n, rate)))
    wall = time.time() - t0
    peak = sampler.stop()
    cpu1 = cpu_all(server.pids(), roots)
    cold = server.cold_starts() - cold0
    warm, evictions = server.warm()
    ok = [r for r in rows if r[3] == 200 and not r[5]]
    tail_rank = max(1, n // 10)
    lat = [r[2] / 1000 for r in rows]
    tail_first = [r[2] / 1000 for r in rows if r[4] and r[0] > tail_rank]
    span = max(r[1] for r in rows) / 1e6 if rows else duration
    res = {"server": server.name, "tenants": n, "offered": rate, "duration": duration,
           "achieved": len(ok) / max(span, 1e-9), "requests": len(rows), "errors": len(rows) - len(ok),
           "p50": pct(lat, 50), "p99": pct(lat, 99), "p999": pct(lat, 99.9),
           "tail_first_n": len(tail_first), "tail_first_p50": pct(tail_first, 50), "tail_first_p99": pct(tail_first, 99),
           "tail_first_max": max(tail_first) if tail_first else None,
           "tenants_seen": len({r[0] for r in rows}), "cold_starts": cold, "pss_mb": peak,
           "cpu_us_per_req": (cpu1 - cpu0) / max(1, len(rows)) * 1e6, "wall": wall, "warm": warm, "evictions": evictions,
           "budget_mb": server.budget_mb, "load_cmd": cmd,
           "errors_by": {}}
    for r in rows:
        if r[3] != 200 or r[5]:
            k = r[5] or str(r[3])
            res["errors_by"][k] = res["errors_by"].get(k, 0) + 1
    log("%-18s N=%-4d %4d/s: %6.0f/s p50 %7.1f ms p99 %7.1f ms tail-first p50 %s ms, errors %d, cold %d, PSS %.0f MiB, %.0f us CPU/req" % (
        server.name, n, rate, res["achieved"], res["p50"], res["p99"],
        "%.1f" % res["tail_first_p50"] if tail_first else "-", res["errors"], cold, peak, res["cpu_us_per_req"]))
    return res


def idle_memory(server):
    return memory(server.pids())[1]


# ---------------------------------------------------------------- report

def f1(v, unit=""):
    return "-" if v is None else ("%.1f%s" % (v, unit))


def output(cmd, env=None):
    """What cmd (a list, run without a shell) prints, stdout and stderr
    (nginx -v writes to stderr), stripped; "?" and the reason if it fails."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "? (%s)" % e
    return (p.stdout.strip() or p.stderr.strip()).splitlines()[0] if (p.stdout.strip() or p.stderr.strip()) else "?"


def header(tools):
    """The report's Machine and Versions lines: CPU model, cores, kernel, Go;
    nginx, uWSGI and gunicorn as their own commands print them."""
    machine = "%s, %d cores, %s %s, %s" % (bench.cpu_model(), os.cpu_count(), os.uname().sysname, os.uname().release,
                                          output(["go", "env", "GOVERSION"]))
    if not tools:
        return machine, "wsgi-wasm only (no peer installed)"
    env = dict(os.environ, PYTHONPATH=tools["NATIVE_PYTHONPATH"])
    versions = ", ".join([
        output([tools["NGINX"], "-v"]),
        "uWSGI " + output([tools["UWSGI"], "--version"]),
        "gunicorn " + output([tools["PYTHON"], "-c", "import gunicorn; print(gunicorn.__version__)"], env)])
    return machine, versions


def write_report(res, out, args, tools, binary):
    path = os.path.join(out, "TENANTS.md")
    L = ["# Many tenants at once: measured", "",
         "Written by `benchmarks/tenants.py` (`make bench-tenants`) on %s; do not edit by hand." % time.strftime("%Y-%m-%d"), ""]
    machine, versions = header(tools)
    L += ["- Machine: %s; 2 cores and 24 GiB, which other work may share (every benchmark process runs under "
          "`nice -n 10`); the machine's load average before the first server started was %s and at the end %s." % (
              machine, res["load_start"], res["load_end"]),
          "- Command: `%s`; run took %.0f s." % (" ".join(["tenants.py"] + sys.argv[1:]), res["took"]),
          "- Versions: %s." % versions,
          ""]
    L += ["## Method", "",
          "- Tenants: N folders generated from `examples/tenants` into `%s/N`: of every 20, "
          "2 Bottle, 2 plain WSGI, 1 Django (SQLite in its data folder), 15 Flask; each its own code (its entry module names it) "
          "and `tenant.toml` (host `tNNNN.bench`, `min_warm = 0`, %s), its site-packages hard links to the vendored copy. "
          "Every server serves those same folders (the native servers with the tenant's `site-packages` first on the path)." % (
              args.tenants_cache.replace(os.path.expanduser("~"), "~"),
              "no `warmup` (`--no-warmup`: snapshots built, their write sets removed before each start, so every first request "
              "restores without one, as right after a deploy)" if args.no_warmup else "`warmup = \"/\"`"),
          "- Load: `benchmarks/tenantload` (open loop: requests leave at planned Poisson arrivals whatever the server does; latency "
          "from the planned time), `GET /` to tenant of rank k with probability proportional to k^-1.1 (rank 1 hottest), "
          "%d s per cell, on the same 2 cores. Tail tenants are ranks above N/10; their first request of the cell is the one "
          "that finds them cold (no instance, no worker).  " % args.duration,
          "- wsgi-wasm: `serve` as shipped (snapshots on, each tenant's own image, built before measuring), `--memory-budget-mb %d` "
          "unless the row says otherwise; measured once `wsgi_wasm_snapshots_ready` counts every tenant, which with tenant.toml's "
          "`warmup` means each snapshot is built and its write set recorded by a warm-up request (as an operator deploys: without it, "
          "the first request of each tenant after a build restores without a write set and takes its page faults one at a time; "
          "100 of those at once on this 2-core VM took seconds each in the previous run, see issue 14); alone (it routes by Host) and behind the same nginx (one server block naming all hosts)." % args.budget,
          "- uWSGI Emperor: one vassal per tenant, one process, `cheap` (no worker until a request), `idle = %d` (the worker ends "
          "after %d s without requests, back to cheap mode): the memory-saving modes of uWSGI's documentation; the master imports "
          "the app and forks the worker on demand (with `lazy-apps`, so that an idle vassal would hold only its master, workers "
          "spawned in the development runs never reported their app ready within 30 s, so it is not used); `cheaper` needs more "
          "than one worker, so it is not used. "
          "nginx: one server block per tenant, `uwsgi_pass` to the vassal's Unix socket." % (UWSGI_IDLE, UWSGI_IDLE),
          "- gunicorn: one master and one sync worker per tenant on a Unix socket; nginx: one server block per tenant, `proxy_pass`.",
          "- nginx 1.22 from Debian, 2 workers, unpacked with `apt-get download` + `dpkg -x` (benchmarks/install.sh), run with a "
          "configuration and prefix of its own, no service.",
          "- Memory: peak PSS, sampled every 2 s, of every process of the server (and of its nginx where it has one): "
          "`/proc/PID/smaps_rollup`. CPU per request: user+system time of those processes (and of reaped children) during the "
          "cell over requests sent. Cold starts: wsgi-wasm's instances started or restored (metrics); uWSGI workers spawned; "
          "gunicorn workers booted (all before the load: every worker is always up).",
          ""]
    L += ["## Results", "",
          "| server | tenants | offered req/s | achieved | p50 ms | p99 ms | p99.9 ms | tail firsts | tail first p50 ms | p99 ms | max ms | errors | cold starts | peak PSS MiB | CPU us/req |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["cells"]:
        L.append("| %s | %d | %d | %.0f | %s | %s | %s | %d | %s | %s | %s | %d%s | %d | %.0f | %.0f |" % (
            r["server"] + (" (budget %d MiB)" % r["budget_mb"] if r.get("budget_row") else ""), r["tenants"], r["offered"],
            r["achieved"], f1(r["p50"]), f1(r["p99"]), f1(r["p999"]), r["tail_first_n"], f1(r["tail_first_p50"]),
            f1(r["tail_first_p99"]), f1(r["tail_first_max"]), r["errors"],
            (" (%s)" % ", ".join("%s %d" % kv for kv in sorted(r["errors_by"].items()))) if r["errors"] else "",
            r["cold_starts"], r["pss_mb"], r["cpu_us_per_req"]))
    L += ["", "Memory after start, before any load (PSS of the whole server, nginx included where it has one), and start time:", "",
          "| server | tenants | PSS MiB idle | MiB per tenant | start s |", "| --- | ---: | ---: | ---: | ---: |"]
    for s in res["starts"]:
        L.append("| %s | %d | %.0f | %.2f | %.0f |" % (s["server"], s["tenants"], s["pss_mb"], s["pss_mb"] / s["tenants"], s["start_s"]))
    budget = [r for r in res["cells"] if r.get("budget_row")]
    if budget:
        L += ["", "Under a budget: wsgi-wasm's warm tenants (metrics `wsgi_wasm_warm_tenants`) and evictions at the end of the cell:", "",
              "| budget MiB | tenants | warm at end | evictions | tenants that got requests |", "| ---: | ---: | ---: | ---: | ---: |"]
        for r in budget:
            L.append("| %d | %d | %s | %s | %d |" % (r["budget_mb"], r["tenants"], r["warm"], r["evictions"], r["tenants_seen"]))
    if res["skipped"]:
        L += ["", "Not measured:", ""] + ["- %s" % s for s in res["skipped"]]
    L += ["", "![latency against offered load](tenants-latency.svg)", "", "![memory against tenants](tenants-memory.svg)", "",
          "## Reading", "", "<!-- reading: written by hand from the figures above -->", ""]
    old = open(path).read() if os.path.exists(path) else ""
    if "## Reading" in old:
        L = L[:L.index("## Reading")] + old[old.index("## Reading"):].rstrip("\n").split("\n") + [""]
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path


def plots(res, out):
    names = []
    for r in res["cells"]:
        if r["server"] not in names and not r.get("budget_row"):
            names.append(r["server"])
    ns = sorted({r["tenants"] for r in res["cells"]})
    panels = []
    for n in ns:
        for metric, title in (("p99", "p99, all requests"), ("tail_first_p50", "p50, tail tenants' first requests")):
            p = svgplot.Panel("%s, %d tenants" % (title, n), "offered req/s", "ms", ylog=True)
            for s in names:
                p.add(s, [(r["offered"], r[metric]) for r in res["cells"]
                          if r["server"] == s and r["tenants"] == n and r[metric] and not r.get("budget_row")])
            panels.append(p)
    svgplot.figure(os.path.join(out, "tenants-latency.svg"), "Latency against offered load (Zipf 1.1 over tenants)", panels, 2)
    p = svgplot.Panel("peak PSS under load", "tenants", "MiB", xlog=True, ylog=True)
    q = svgplot.Panel("PSS idle after start", "tenants", "MiB", xlog=True, ylog=True)
    for s in names:
        pts = {}
        for r in res["cells"]:
            if r["server"] == s and not r.get("budget_row"):
                pts[r["tenants"]] = max(pts.get(r["tenants"], 0), r["pss_mb"])
        p.add(s, sorted(pts.items()))
        q.add(s, sorted((x["tenants"], x["pss_mb"]) for x in res["starts"] if x["server"] == s))
    svgplot.figure(os.path.join(out, "tenants-memory.svg"), "Memory against tenants", [p, q], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "bin", "wsgi-wasm"))
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--tenants", default="100,500,1000")
    ap.add_argument("--tenants-cache", default=os.path.join(CACHE, "bench-tenants"), metavar="DIR",
                    help="where the generated tenant folders are kept, one folder per N (two runs at once need two)")
    ap.add_argument("--rates", default="100,300")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--servers", default="wsgi-wasm,wsgi-wasm + nginx,uWSGI Emperor,gunicorn")
    ap.add_argument("--budget", type=int, default=16384, help="wsgi-wasm's --memory-budget-mb in the ordinary rows")
    ap.add_argument("--budget-cell", action="append", default=[], metavar="N:MIB",
                    help="one more wsgi-wasm cell at N tenants with that budget (repeatable)")
    ap.add_argument("--max-native", type=int, default=100000, help="skip gunicorn and uWSGI above this many tenants")
    ap.add_argument("--max-tenants", action="append", default=[], metavar="SERVER=N",
                    help="skip SERVER (a --servers name) above N tenants (repeatable), e.g. gunicorn=100: "
                         "at 42 MiB per idle tenant, 500 gunicorn tenants would not fit in 24 GiB")
    ap.add_argument("--no-warmup", action="store_true",
                    help="tenants without tenant.toml's warmup, and wsgi-wasm without write sets at the start (see above)")
    ap.add_argument("--not-measured", action="append", default=[], metavar="TEXT",
                    help="a cell left out of this run and why, for the report's \"Not measured\" list (repeatable)")
    ap.add_argument("--from-json", metavar="PATH", help="measure nothing: write the report and plots from a tenants.json "
                    "(the command line in the report is the one the json records)")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            res = json.load(f)
        out = args.out
        if "argv" in res:  # the run's own flags describe it
            sys.argv = res["argv"]
            args = ap.parse_args(sys.argv[1:])
        else:  # a run before argv was recorded: give its flags again
            i = sys.argv.index("--from-json")
            sys.argv = sys.argv[:i] + sys.argv[i + 2:]
        plots(res, out)
        log("wrote", write_report(res, out, args, bench.install(), args.binary))
        return
    began = time.time()
    bench.pin_interpreter()
    # The peers (and the front) only where a row needs them.
    tools = {} if set(args.servers.split(",")) == {"wsgi-wasm"} else bench.install()
    os.makedirs(args.out, exist_ok=True)
    res = {"cells": [], "starts": [], "skipped": list(args.not_measured), "load_start": " ".join(open("/proc/loadavg").read().split()[:3])}
    rates = [int(x) for x in args.rates.split(",")]
    caps = {}
    for c in args.max_tenants:
        name, _, most = c.rpartition("=")
        caps[name] = int(most)
    for name in ("gunicorn", "uWSGI Emperor"):
        caps[name] = min(caps.get(name, args.max_native), args.max_native)
    budget_cells = [tuple(int(x) for x in c.split(":")) for c in args.budget_cell]
    for n in [int(x) for x in args.tenants.split(",")]:
        tenants = generate(args.tenants_cache, n, not args.no_warmup)
        snapdir = None if not args.no_warmup else tenants_dir(args.tenants_cache, n, False) + "-snapshots"
        for name in args.servers.split(","):
            if n > caps.get(name, n):
                res["skipped"].append("%s at %d tenants (capped at %d tenants in this run)" % (name, n, caps[name]))
                continue
            work = tempfile.mkdtemp(prefix="wsgi-wasm-tenants-")
            s = Server(name, n, tenants, work, tools, args.binary, args.budget, snapdir)
            try:
                t = time.time()
                s.start()
                start_s = time.time() - t
                time.sleep(2)
                res["starts"].append({"server": name, "tenants": n, "pss_mb": idle_memory(s), "start_s": start_s})
                log("%s N=%d started in %.0f s, PSS %.0f MiB" % (name, n, start_s, res["starts"][-1]["pss_mb"]))
                for rate in rates:
                    res["cells"].append(cell(s, n, rate, args.duration, work))
            finally:
                s.stop()
                if not os.environ.get("WSGI_WASM_BENCH_KEEP"):
                    shutil.rmtree(work, ignore_errors=True)
        for mib in [mib for at, mib in budget_cells if at == n]:
            work = tempfile.mkdtemp(prefix="wsgi-wasm-tenants-")
            s = Server("wsgi-wasm", n, tenants, work, tools, args.binary, mib, snapdir)
            try:
                s.start()
                r = cell(s, n, rates[-1], args.duration, work)
                r["budget_row"] = True
                res["cells"].append(r)
            finally:
                s.stop()
                if not os.environ.get("WSGI_WASM_BENCH_KEEP"):
                    shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    res["argv"] = sys.argv
    res["took"] = time.time() - began
    with open(os.path.join(args.out, "tenants.json"), "w") as f:
        json.dump(res, f, indent=1)
    plots(res, args.out)
    log("wrote", write_report(res, args.out, args, tools, args.binary))


if __name__ == "__main__":
    main()
