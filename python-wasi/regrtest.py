"""Run CPython's own regression tests for the compiled-in modules under
wazero (through `wsgi-wasm python`) and write python-wasi/REGRTEST.md.

Usage: regrtest.py WSGI_WASM_BINARY LIB_TEST_TARBALL OUT_MD

The tests come from the source tree of the same CPython (Lib/test, kept by
the recipe next to the stage-1 build); they are not in the stdlib zip. Each
module runs in its own interpreter with a writable /tmp. Failures are grouped
by their exception line and explained from regrtest-reasons.txt.
"""
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

from gendoc import splice

MODULES = [
    "test_zlib", "test_sqlite3", "test_json", "test_decimal", "test_hashlib",
    "test_wsgiref", "test_urlparse", "test_http_cookies", "test_email",
    "test_datetime", "test_struct", "test_binascii", "test_pickle", "test_csv",
    "test_unicodedata", "test_xml_etree", "test_time",
]
TIMEOUT = 900

# Modules run through unittest instead of regrtest: the package minus the
# submodules that cannot load here, each with the reason it is left out.
# (3.11 names the urllib.parse tests test_urlparse.)
UNITTEST_MODULES = {
    "test_sqlite3": (
        ["test.test_sqlite3." + m for m in (
            "test_backup", "test_factory", "test_hooks", "test_regression", "test_transactions",
            "test_types", "test_userfunctions", "test_dump")],
        {"test.test_sqlite3.test_dbapi": "imports _testcapi (INT_MAX), a test module the recipe leaves out "
                                         "(--disable-test-modules); not run"},
    ),
}

HERE = os.path.dirname(os.path.abspath(__file__))


def load_reasons():
    reasons = []
    with open(os.path.join(HERE, "regrtest-reasons.txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            pattern, _, reason = line.partition("\t")
            reasons.append((re.compile(pattern), reason.strip()))
    return reasons


def run_module(binary, lib_dir, tmp, module):
    cmd = [binary, "--quiet", "python", "--mount", tmp + ":/tmp:rw", "--env", "TMPDIR=/tmp", "--"]
    if module in UNITTEST_MODULES:
        cmd += ["-m", "unittest", "-v"] + UNITTEST_MODULES[module][0]
    else:
        cmd += ["-m", "test", "-v", module]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=lib_dir, capture_output=True, text=True,
                              errors="replace", timeout=TIMEOUT)
        out, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code = "timeout"
    return out, code, time.monotonic() - start


SUMMARY = re.compile(r"^Ran (\d+) tests? in")
RESULT = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$")
HEADER = re.compile(r"^(ERROR|FAIL): (\S+) \((\S+)\)")


def parse(out):
    ran = 0
    counts = {"failures": 0, "errors": 0, "skipped": 0, "expected failures": 0}
    for line in out.splitlines():
        m = SUMMARY.match(line)
        if m:
            ran += int(m.group(1))
        m = RESULT.match(line)
        if m and m.group(2):
            for part in m.group(2).split(", "):
                key, _, value = part.partition("=")
                key = key.replace("_", " ")
                if key in counts:
                    counts[key] += int(value)
    return ran, counts


def failure_lines(out):
    """(test id, exception line) for each ERROR/FAIL block."""
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = HEADER.match(line)
        if not m:
            continue
        exc = ""
        for follow in lines[i + 1:i + 200]:
            if follow.startswith("=" * 20) or follow.startswith("-" * 20) and exc:
                break
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Failure|Warning|Exit)\b", follow):
                exc = follow.strip()
        found.append((m.group(3) + "." + m.group(2), exc or "(no exception line)"))
    return found


def explain(reasons, exc):
    for pattern, reason in reasons:
        if pattern.search(exc):
            return reason
    return "not yet classified"


def main():
    binary, tarball, out_md = sys.argv[1:4]
    binary = os.path.abspath(binary)
    reasons = load_reasons()
    rows, classes = [], {}
    with tempfile.TemporaryDirectory(prefix="regrtest-") as work:
        with tarfile.open(tarball) as tf:
            tf.extractall(work)
        lib_dir = os.path.join(work, "Lib")
        for module in MODULES:
            tmp = tempfile.mkdtemp(dir=work)
            out, code, seconds = run_module(binary, lib_dir, tmp, module)
            ran, c = parse(out)
            failed = c["failures"] + c["errors"]
            status = "pass" if code == 0 else ("timeout" if code == "timeout" else "fail")
            if ran == 0 and status != "pass":
                status = "crash" if status == "fail" else status
                tail = [l for l in out.strip().splitlines() if l.strip()][-1:] or ["(no output)"]
                classes.setdefault(("(whole module)", tail[0][:160]), []).append(module)
            m = re.search(r"^(test_\w+) skipped -- (.*)$", out, re.M)
            if m and ran == 0:
                status = "skipped"
                classes.setdefault(("whole module skipped by CPython's test support", m.group(2)), []).append(module)
            rows.append((module, status, ran, ran - failed - c["skipped"], failed, c["skipped"], seconds))
            for left_out, why in UNITTEST_MODULES.get(module, ([], {}))[1].items():
                classes.setdefault((why, "(not loaded)"), []).append(left_out)
            for test_id, exc in failure_lines(out):
                classes.setdefault((explain(reasons, exc), exc[:160]), []).append(test_id)
            print(f"{module}: {status}, ran {ran}, failed {failed}, skipped {c['skipped']}, {seconds:.0f} s",
                  file=sys.stderr)
    write_md(out_md, rows, classes)
    with open(out_md) as f:
        splice(os.path.join(HERE, "README.md"), "regrtest", f.read().split("\n", 2)[2])


def write_md(path, rows, classes):
    total = [sum(r[i] for r in rows) for i in (2, 3, 4, 5)]
    with open(path, "w") as f:
        f.write("<!-- generated by `make regrtest` (python-wasi/regrtest.py); do not edit -->\n")
        f.write("# CPython regression tests under wazero\n\n")
        f.write("Each module runs with `wsgi-wasm python -- -m test -v MODULE`, the current directory\n"
                "(CPython's `Lib/`) read-only and a writable `/tmp`. Counts are unittest's.\n\n")
        f.write("| module | result | tests run | passed | failed | skipped | seconds |\n")
        f.write("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
        for module, status, ran, passed, failed, skipped, seconds in rows:
            f.write(f"| {module} | {status} | {ran} | {passed} | {failed} | {skipped} | {seconds:.0f} |\n")
        f.write(f"| **all** | | {total[0]} | {total[1]} | {total[2]} | {total[3]} | |\n\n")
        f.write("## Failure classes\n\n")
        if not classes:
            f.write("None.\n")
            return
        f.write("| reason | exception | count | examples |\n| --- | --- | ---: | --- |\n")
        for (reason, exc), tests in sorted(classes.items(), key=lambda kv: -len(kv[1])):
            examples = ", ".join(sorted(set(tests))[:3]).replace("|", "\\|")
            f.write(f"| {reason} | `{exc.replace('|', '/').replace('`', '')}` | {len(tests)} | {examples} |\n")


if __name__ == "__main__":
    main()
