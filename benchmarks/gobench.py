"""Run the Go benchmarks and write their figures, never typed by hand.

Usage: gobench.py [COUNT]
Writes benchmarks/RESULTS.md (section go-benchmarks) and the host-overhead
section of sandbox/README.md. Each figure is the median of COUNT runs.
"""
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-wasi"))
from gendoc import splice  # noqa: E402

LINE = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$")


STOP_TARGET_US = 10000  # a runaway guest stops within 10 ms after its deadline


def stop_lateness(runs):
    """Lines on BenchmarkStopAfterDeadline against the 10 ms target."""
    lines = ["Runaway guest stopped after its deadline (BenchmarkStopAfterDeadline; target 10 ms), "
             "median over the runs of each run's p50 / p99 / max:", ""]
    found = False
    for name, metrics in runs.items():
        if not name.startswith("BenchmarkStopAfterDeadline/") or "late-p99-µs" not in metrics:
            continue
        found = True
        p50, p99, worst = (statistics.median(metrics[u]) for u in ("late-p50-µs", "late-p99-µs", "late-max-µs"))
        lines.append("- %s: %.2f ms / %.2f ms / %.2f ms: %s" % (
            name.split("/", 1)[1], p50 / 1000, p99 / 1000, worst / 1000,
            "met" if p99 <= STOP_TARGET_US else "not met at p99"))
    return lines if found else ["Runaway guest stopped after its deadline: not measured"]


def main():
    count = sys.argv[1] if len(sys.argv) > 1 else "5"
    cmd = ["go", "test", "./benchmarks", "-run", "TestInterruptOverhead|TestNeighbourIsolation", "-v", "-bench", ".",
           "-benchmem", "-count", count, "-benchtime", "1s"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    runs = {}
    overhead = ""
    neighbour = ""
    for line in proc.stdout.splitlines():
        if "median p99 ratio" in line:
            neighbour = line.split(": ", 1)[1].strip()
        if "overhead" in line and "hello-Flask request" in line:
            overhead = line.split("hello-Flask request: ", 1)[1].strip()
        m = LINE.match(line.strip())
        if not m:
            continue
        metrics = {}
        parts = m.group(3).split()
        for value, unit in zip(parts[0::2], parts[1::2]):
            metrics.setdefault(unit, []).append(float(value))
        for unit, vals in metrics.items():
            runs.setdefault(m.group(1), {}).setdefault(unit, []).extend(vals)
    units = ["ns/op", "MB/s", "host-ns/op", "guest-ns/op", "B/op", "allocs/op"]
    out = ["Machine: %s, %d cores, %s; `%s`; median of %s runs.\n" % (
        platform.machine(), os.cpu_count(), subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip(),
        " ".join(cmd), count), "",
        "| benchmark | " + " | ".join(units) + " |", "| --- " * (len(units) + 1) + "|"]
    for name, metrics in runs.items():
        cells = []
        for u in units:
            cells.append("%.0f" % statistics.median(metrics[u]) if u in metrics else "")
        out.append("| %s | %s |" % (name, " | ".join(cells)))
    out += ["", "Interrupt checks on a hello-Flask request (TestInterruptOverhead): " + (overhead or "not measured"),
            "", "Neighbour p99 beside a runaway tenant, median of 3 rounds (TestNeighbourIsolation; target 1.5x): "
            + (neighbour or "not measured"), ""]
    out += stop_lateness(runs) + [""]
    text = "\n".join(out)
    splice(os.path.join(HERE, "RESULTS.md"), "go-benchmarks", text)
    host = runs.get("BenchmarkHostOverhead", {})
    if host:
        splice(os.path.join(ROOT, "sandbox", "README.md"), "host-overhead",
               "Per request, outside the guest call (BenchmarkHostOverhead, 20 headers, 1 KiB body): "
               "**%.1f µs** host time and %.0f allocations (%.0f B), against %.1f µs in the guest. "
               "Interrupt checks on a hello-Flask request: %s. (`make bench-go`, %s, %d cores.)" % (
                   statistics.median(host["host-ns/op"]) / 1000, statistics.median(host["allocs/op"]),
                   statistics.median(host["B/op"]), statistics.median(host["guest-ns/op"]) / 1000,
                   overhead or "not measured", platform.machine(), os.cpu_count()))
    print(text)


if __name__ == "__main__":
    main()
