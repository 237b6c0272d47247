"""A wsgi-wasm binary whose wazero emits no bounds checks, for measuring
what those checks cost (speed.py's SPEED.md, benchmarks/bench.py's
"wsgi-wasm unchecked" rows). Never serve tenants with it: without the
checks, and without guard pages and a fault handler in their place, a guest
can read and write outside its linear memory.

The binary is built against a copy of the module's wazero, edited here, in a
folder of the caller's; give it its own compilation cache (--cache-dir),
since the edited compiler reports the same version as the real one.
"""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAZERO = "github.com/tetratelabs/wazero"
# The statement in wazero's optimizing compiler (memOpSetup, in
# internal/engine/wazevo/frontend/lower.go) that puts the "exit with
# ExitCodeMemoryOutOfBounds if the access ends past the memory's length"
# instruction into the code; the unchecked build leaves it out.
BOUNDS_CHECK_FILE = os.path.join("internal", "engine", "wazevo", "frontend", "lower.go")
BOUNDS_CHECK_INSERT = "builder.InsertInstruction(exitIfNZ)"


def run(cmd, env=None, cwd=None):
    """Run cmd and return its output; fail with the last line it wrote to
    stderr. (speed.py runs everything through it.)"""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (" ".join(cmd[:3]), proc.returncode,
                                                          (proc.stderr.strip().splitlines() or ["no output"])[-1]))
    return proc.stdout


def unchecked_binary(work):
    """Build wsgi-wasm against a copy of its wazero whose compiler emits no
    bounds check before a memory access; return the binary's path and the
    wazero version. Fails loudly if that wazero's compiler is not shaped as
    expected (the edit must remove exactly one statement, in memOpSetup)."""
    version, src = run(["go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", WAZERO], cwd=ROOT).split()
    dst = os.path.join(work, "wazero")
    shutil.copytree(src, dst)
    for d, _, files in os.walk(dst):
        os.chmod(d, 0o755)
        for name in files:
            os.chmod(os.path.join(d, name), 0o644)
    path = os.path.join(dst, BOUNDS_CHECK_FILE)
    with open(path) as f:
        code = f.read()
    setup = code.index("func (c *Compiler) memOpSetup(")
    end = code.index("\n}\n", setup)
    body = code[setup:end]
    if body.count(BOUNDS_CHECK_INSERT) != 1 or "ExitCodeMemoryOutOfBounds" not in body:
        raise RuntimeError("wazero %s: memOpSetup does not insert one bounds check as unchecked.py expects" % version)
    with open(path, "w") as f:
        f.write(code[:setup] + body.replace(BOUNDS_CHECK_INSERT, "_ = exitIfNZ // bounds check left out (python-wasi/unchecked.py)") + code[end:])
    modfile = os.path.join(work, "go.mod")
    shutil.copy(os.path.join(ROOT, "go.mod"), modfile)
    shutil.copy(os.path.join(ROOT, "go.sum"), os.path.join(work, "go.sum"))
    run(["go", "mod", "edit", "-modfile", modfile, "-replace", "%s=%s" % (WAZERO, dst)], cwd=ROOT)
    binary = os.path.join(work, "wsgi-wasm-unchecked")
    run(["go", "build", "-modfile", modfile, "-o", binary, "./cmd/wsgi-wasm"], cwd=ROOT)
    return binary, version
