"""Measure the interpreter under wazero against native python3.11 and write
python-wasi/SPEED.md (and, with --trials, python-wasi/TRIALS.md).

Usage:
  speed.py BINARY OUT_MD                 the shipped recipe's interpreter
  speed.py BINARY OUT_MD --trials        also build and measure each variant
                                         in TRIALS (minutes each)

Workloads (bench/workloads.py) time themselves in-process, best of REPEATS,
so start-up is excluded; start-up is measured separately as the wall time of
`wsgi-wasm python -- -c pass` with a warm and with an empty compilation cache.

It also times the same interpreter under a build of wsgi-wasm whose wazero
emits no bounds check before each linear-memory access (unchecked.py): what
those checks cost; and, where Node.js is installed, the same python.wasm under
V8 (Node's WASI), which needs no such checks.
"""
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from gendoc import splice
from unchecked import BOUNDS_CHECK_INSERT, run, unchecked_binary

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = "/usr/bin/python3.11"
WORKLOADS = ["loops", "dict_str", "json", "template"]
REPEATS = 5
V8_REPEATS = 4 * REPEATS

# Build variants tried for speed: name, environment for build.sh, description.
# The recipe's defaults are the first row; see README "Build options tried".
TRIALS = [
    ("shipped", {}, "the recipe's defaults"),
    ("no wasm-opt", {"WSGI_WASM_OPT": "none"}, "skip binaryen's wasm-opt"),
    ("wasm-opt -O3", {"WSGI_WASM_OPT": "-O3"}, "wasm-opt -O3 instead of -O2"),
    ("clang -O3", {"WSGI_WASM_CFLAGS": "-O3"}, "compile CPython with -O3"),
    ("clang -O3 + wasm-opt -O3", {"WSGI_WASM_CFLAGS": "-O3", "WSGI_WASM_OPT": "-O3"}, "both at -O3"),
    ("no pymalloc", {"WSGI_WASM_CONFIGURE": "--without-pymalloc"}, "libc malloc for small objects, CPython's default on WASI"),
    # configure's --with-lto=thin fails at the libmpdec archive; -flto=thin in
    # CFLAGS builds, once configure is told the float word order (its check
    # reads an object file, which LTO makes bitcode).
    ("thin LTO", {"WSGI_WASM_CFLAGS": "-O2 -flto=thin", "ax_cv_c_float_words_bigendian": "no"},
     "link-time optimisation across CPython and the guest module"),
    ("bulk memory", {"WSGI_WASM_CFLAGS": "-O2 -mbulk-memory", "WSGI_WASM_OPT": "-O2 --enable-bulk-memory"},
     "memory.copy and memory.fill instead of wasi-libc's memcpy and memset loops"),
    ("computed gotos", {"WSGI_WASM_CONFIGURE": "--with-pymalloc --with-computed-gotos"}, "labels-as-values dispatch in the eval loop (off when cross-compiling)"),
]


def workload_times(python_cmd, env=None):
    out = {}
    for w in WORKLOADS:
        out[w] = float(run(python_cmd + ["workloads.py", w, str(REPEATS)], env=env, cwd=os.path.join(HERE, "bench")))
    return out


def wasm_cmd(binary):
    return [binary, "--quiet", "python", "--"]


def startup(binary, env, cache_dir=None, runs=5):
    times = []
    for _ in range(runs):
        args = [binary, "--quiet"]
        if cache_dir == "fresh":
            d = tempfile.mkdtemp(prefix="wazero-cold-")
            args += ["--cache-dir", d]
        t0 = time.perf_counter()
        run(args + ["python", "--", "-c", "pass"], env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# Runs python.wasm under Node's WASI: argv[2] the module, argv[3] the folder
# that is the guest's /usr/local/lib, argv[4] the one that is /bench, the
# rest the interpreter's arguments. The host's own imports (wsgi_host: the
# interrupt check-in, sockets, locks) are answered with 0; the workloads use
# none of them, and the interrupt word is never set, so the checks cost what
# they cost under wazero.
NODE_RUNNER = """
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
const [,, wasmPath, libDir, benchDir, ...args] = process.argv;
const wasi = new WASI({ version: 'preview1', args: ['python', ...args],
  env: { PYTHONHOME: '/usr/local', PYTHONDONTWRITEBYTECODE: '1' },
  preopens: { '/usr/local/lib': libDir, '/bench': benchDir } });
const mod = await WebAssembly.compile(await readFile(wasmPath));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(mod)) {
  if (imp.module === 'wasi_snapshot_preview1') continue;
  imports[imp.module] ??= {};
  if (imp.kind === 'function') imports[imp.module][imp.name] = () => 0;
}
wasi.start(await WebAssembly.instantiate(mod, imports));
"""


def node_times(out_dir, work):
    """The workloads under V8, or None without Node.js; and its version."""
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        return None, None
    runner = os.path.join(work, "run-wasi.mjs")
    with open(runner, "w") as f:
        f.write(NODE_RUNNER)
    cmd = [node, "--no-warnings", runner, os.path.join(out_dir, "python.wasm"), os.path.join(out_dir, "lib"),
           os.path.join(HERE, "bench"), "/bench/workloads.py"]
    out = {}
    for w in WORKLOADS:
        # V8 first runs a baseline compile and swaps in optimised code as
        # it is ready; more runs, so that the best is V8's steady state.
        out[w] = float(run(cmd + [w, str(V8_REPEATS)]).split()[-1])
    return out, run([node, "--version"]).strip()


def build_variant(extra_env):
    env = dict(os.environ, **extra_env)
    t0 = time.perf_counter()
    out_dir = run(["bash", os.path.join(HERE, "build.sh")], env=env).strip().splitlines()[-1]
    return out_dir, time.perf_counter() - t0


def env_for(out_dir):
    return dict(os.environ, WSGI_WASM_PYTHON_DIR=out_dir)


def ratio_row(name, native, wasm):
    cells = ["%.1f ms / %.1f ms = **%.2fx**" % (wasm[w] * 1e3, native[w] * 1e3, wasm[w] / native[w]) for w in WORKLOADS]
    geo = statistics.geometric_mean([wasm[w] / native[w] for w in WORKLOADS])
    return "| %s | %s | %.2fx |\n" % (name, " | ".join(cells), geo), geo


def read_info(out_dir):
    info = {}
    with open(os.path.join(out_dir, "build-info.txt")) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "size":
                info[parts[1]] = int(parts[2])
            elif len(parts) == 2:
                info[parts[0]] = parts[1]
    return info


def main():
    binary, out_md = os.path.abspath(sys.argv[1]), sys.argv[2]
    trials = "--trials" in sys.argv[3:]
    out_dir, _ = build_variant({})
    _, cached_build = build_variant({})
    env = env_for(out_dir)
    native = workload_times([NATIVE])
    wasm = workload_times(wasm_cmd(binary), env)
    work = tempfile.mkdtemp(prefix="speed-unchecked-")
    try:
        unchecked, wazero_version = unchecked_binary(work)
        # Its own compilation cache: the edited compiler has the same version.
        # (The workloads time themselves in-process, so its compile is not
        # in the figures.)
        unchecked_cmd = [unchecked, "--quiet", "--cache-dir", os.path.join(work, "cache"), "python", "--"]
        wasm_unchecked = workload_times(unchecked_cmd, env)
        wasm_again = workload_times(wasm_cmd(binary), env)
        wasm_v8, node_version = node_times(out_dir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    warm = startup(binary, env)
    cold = startup(binary, env, cache_dir="fresh", runs=3)
    t0 = time.perf_counter()
    run([NATIVE, "-c", "pass"])
    native_start = time.perf_counter() - t0
    info = read_info(out_dir)
    header = "| build | " + " | ".join(WORKLOADS) + " | geometric mean |\n" + "| --- " * (len(WORKLOADS) + 2) + "|\n"
    row, geo = ratio_row("shipped", native, wasm)
    row_unchecked, geo_unchecked = ratio_row("shipped, wazero without bounds checks (measurement only: unsafe)",
                                             native, wasm_unchecked)
    row_v8, geo_v8 = ratio_row("shipped `python.wasm`, under V8 (Node.js %s, its WASI)" % node_version,
                               native, wasm_v8) if wasm_v8 else ("", 0)
    with open(out_md, "w") as f:
        f.write("<!-- generated by `make speed` (python-wasi/speed.py); do not edit -->\n")
        f.write("# Interpreter speed under wazero\n\n")
        f.write("Machine: %s, %d cores, %s. Native: Debian's %s. Each cell: time under wazero / native time "
                "= ratio (best of %d in-process runs; lower is better).\n\n"
                % (platform.machine(), os.cpu_count(), platform.platform(terse=True),
                   run([NATIVE, "-VV"]).split("\n")[0], REPEATS))
        f.write(header + row + "\n")
        f.write("Geometric mean: **%.2fx** native (target 2x).\n\n" % geo)
        f.write("## What wazero's bounds checks cost\n\n")
        f.write("wazero %s's optimizing compiler checks every load and store against the memory's length "
                "(an add, a compare and a branch to an exit, and often a load of the length), leaving a check "
                "out only where the same address value was checked as far along the same straight path. Engines such as "
                "V8 and Wasmtime emit no check on 64-bit hosts: they reserve 8 GiB of address space around a "
                "32-bit memory, leave all but its current size inaccessible, and turn the hardware fault of an "
                "out-of-bounds access into a trap. wazero has no such mode. The second row runs the same "
                "interpreter under a wsgi-wasm built against a copy of wazero %s whose compiler leaves the "
                "check out (`python-wasi/unchecked.py` drops that one statement, `%s` in memOpSetup), with its own compilation "
                "cache. It is for measurement only: without the checks, and without guard pages and a fault "
                "handler in their place, a guest can read and write outside its memory.\n\n"
                % (wazero_version, wazero_version, BOUNDS_CHECK_INSERT))
        f.write(header + row + row_unchecked + row_v8 + "\n")
        f.write("Without the checks the interpreter takes %s of the time it takes with them (%s); the shipped "
                "build, timed again after the unchecked one, took %s of its first time. Geometric mean without "
                "the checks: **%.2fx** native.\n\n"
                % (", ".join("%.0f%%" % (100 * wasm_unchecked[w] / wasm[w]) for w in WORKLOADS),
                   ", ".join(WORKLOADS),
                   ", ".join("%.0f%%" % (100 * wasm_again[w] / wasm[w]) for w in WORKLOADS), geo_unchecked))
        if wasm_v8:
            f.write("The last row runs the same `python.wasm` under V8, which guards memory with reserved address "
                    "space instead of checks, through Node's WASI (the module's own host imports answered with 0; "
                    "the workloads use none, and the interrupt word stays clear, so its checks run as under "
                    "wazero), best of %d runs, since V8 starts on baseline code and swaps in optimised code while "
                    "it runs: %.2fx native, taking %s of the time wazero takes (%s). V8's times move more from run to "
                    "run than wazero's (by up to 2x on template across runs on this machine: when its optimising "
                    "tier takes over the eval loop varies), so read that row as the order of size.\n\n"
                    % (V8_REPEATS, geo_v8, ", ".join("%.0f%%" % (100 * wasm_v8[w] / wasm[w]) for w in WORKLOADS), ", ".join(WORKLOADS)))
        else:
            f.write("V8 was not measured: no `node` on this machine.\n\n")
        f.write("| start-up (`python -c pass`, wall, median) | seconds |\n| --- | ---: |\n")
        f.write("| wsgi-wasm, warm compilation cache | %.3f |\n" % warm)
        f.write("| wsgi-wasm, empty compilation cache (compiles the module) | %.3f |\n" % cold)
        f.write("| native python3.11 | %.3f |\n\n" % native_start)
        f.write("| artefact | bytes |\n| --- | ---: |\n")
        for k in ("python.wasm", "python-reactor.wasm", "lib/python311.zip", "debug/python.wasm"):
            f.write("| %s | %d |\n" % (k, info.get(k, 0)))
        f.write("\nBuild of this interpreter: CPython stage %s s (cold, %d cores), link stage %s s; "
                "`build.sh` with the recipe unchanged (everything cached): %.2f s.\n"
                % (info.get("cpython_build_seconds", "?"), os.cpu_count(), info.get("link_seconds", "?"), cached_build))
    with open(out_md) as f:
        splice(os.path.join(HERE, "README.md"), "speed", f.read().split("\n", 2)[2])
    if not trials:
        return
    trial_md = os.path.join(os.path.dirname(out_md), "TRIALS.md")
    with open(trial_md, "w") as f:
        f.write("<!-- generated by `make speed-trials` (python-wasi/speed.py --trials); do not edit -->\n")
        f.write("# Build options tried for speed\n\n")
        f.write("Each variant is built by the recipe with the environment shown, then timed like SPEED.md "
                "(ratio to native, lower is better). Native is measured once for the whole table (the best of "
                "two rounds of %d runs), so rows differ only by the variant.\n\n" % REPEATS)
        f.write("| variant | environment | " + " | ".join(WORKLOADS) + " | geometric mean | python.wasm bytes |\n")
        f.write("| --- " * (len(WORKLOADS) + 4) + "|\n")
        first, second = workload_times([NATIVE]), workload_times([NATIVE])
        native = {w: min(first[w], second[w]) for w in WORKLOADS}
        for name, extra, desc in TRIALS:
            envtext = " ".join("%s=%s" % kv for kv in extra.items()) or "(defaults)"
            try:
                out_dir, seconds = build_variant(extra)
                wasm = workload_times(wasm_cmd(binary), env_for(out_dir))
            except RuntimeError as e:
                f.write("| %s (%s) | `%s` | %s |\n" % (name, desc, envtext, " | ".join(["build failed: %s" % str(e)[-200:].replace("|", "/")] + [""] * (len(WORKLOADS) + 1))))
                f.flush()
                continue
            row, geo = ratio_row(name, native, wasm)
            cells = row.strip().strip("|").split("|")
            f.write("| %s (%s) | `%s` |%s| %d |\n" % (name, desc, envtext, "|".join(cells[1:]),
                                                      read_info(out_dir).get("python.wasm", 0)))
            f.flush()
            print("trial %s: %.2fx (build %.0f s)" % (name, geo, seconds), file=sys.stderr)
    with open(trial_md) as f:
        splice(os.path.join(HERE, "README.md"), "trials", f.read().split("\n", 2)[2])


if __name__ == "__main__":
    main()
