"""Run CPython's own regression tests for the compiled-in modules under
wazero (through `wsgi-wasm python`) and write python-wasi/REGRTEST.md, and
the same tables into README.md's generated:regrtest section.

Usage: regrtest.py WSGI_WASM_BINARY LIB_TEST_TARBALL OUT_MD

The tests come from the source tree of the same CPython (Lib/test, kept by
the recipe next to the stage-1 build); they are not in the stdlib zip. Each
module runs in its own interpreter with a writable /tmp. Failures are grouped
by their exception line and explained from regrtest-reasons.txt.

Environment (for iterating; a full run uses neither):
  REGRTEST_MODULES  space-separated modules to run instead of MODULES
  REGRTEST_LOG_DIR  keep each module's raw output there as MODULE.log
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
    # the compiled-in modules a WSGI app leans on
    "test_zlib", "test_sqlite3", "test_json", "test_decimal", "test_hashlib",
    "test_wsgiref", "test_urlparse", "test_http_cookies", "test_email",
    "test_datetime", "test_struct", "test_binascii", "test_pickle", "test_csv",
    "test_unicodedata", "test_xml_etree", "test_time",
    # pure-Python stdlib used by web apps, and the file system as WASI sees it
    "test_re", "test_codecs", "test_base64", "test_hmac", "test_random", "test_statistics",
    "test_http_cookiejar", "test_cgi", "test_htmlparser", "test_mimetypes", "test_tomllib",
    "test_uuid", "test_logging", "test_io", "test_os", "test_pathlib", "test_shutil",
    "test_tempfile", "test_zipfile", "test_gzip", "test_zoneinfo", "test_fileio",
    # the interpreter itself
    "test_sys", "test_exceptions",
]
# 3.11 names the urllib.parse tests test_urlparse (there is no test_urllib_parse).

# regrtest leaves every resource off unless -u names it. These cost only
# time: "decimal" runs all of decimaltestdata instead of a random tenth,
# "cpu" the long unicodedata/normalization checks, "tzdata" the zoneinfo
# sweeps. network/urlfetch/subprocess/gui/audio/curses stay off (nothing to
# reach here), and so does largefile (multi-GiB files in /tmp).
RESOURCES = "cpu,decimal,tzdata"
TIMEOUT = 900

# Modules whose test package imports something that cannot exist in this
# build only for a constant or a helper class: the interpreter first puts a
# stand-in into sys.modules, then runs regrtest as `-m test` would. The
# stand-ins are test scaffolding, not part of the interpreter.
PRELUDES = {
    # test_dbapi (which every other sqlite3 test module imports) does
    # `from _testcapi import INT_MAX, ULLONG_MAX`; the recipe builds with
    # --disable-test-modules. The stand-in holds just those two C limits of
    # wasm32 (32-bit int, 64-bit unsigned long long).
    "test_sqlite3": (
        "import sys, types\n"
        "m = types.ModuleType('_testcapi')\n"
        "m.INT_MAX, m.ULLONG_MAX = 2**31 - 1, 2**64 - 1\n"
        "sys.modules['_testcapi'] = m\n",
        "a stand-in `_testcapi` that holds only `INT_MAX` and `ULLONG_MAX` (the two constants "
        "`test_dbapi` imports, and every other sqlite3 test module imports `test_dbapi`); "
        "the recipe builds without the test C modules",
    ),
    # test_wsgiref imports NoLogRequestHandler from test_httpservers, and
    # test_httpservers skips its whole module when there are no sockets;
    # that would skip every wsgiref test. The stand-in is the same four-line
    # class.
    "test_wsgiref": (
        "import sys, types\n"
        "m = types.ModuleType('test.test_httpservers')\n"
        "class NoLogRequestHandler:\n"
        "    def log_message(self, *args): pass\n"
        "    def read(self, n=None): return ''\n"
        "m.NoLogRequestHandler = NoLogRequestHandler\n"
        "sys.modules['test.test_httpservers'] = m\n",
        "a stand-in `test.test_httpservers` holding only its `NoLogRequestHandler` class: the real "
        "module skips itself as a whole without sockets, which would take every wsgiref test "
        "with it (the one test that needs a real server, `test_interrupted_write`, skips itself for want "
        "of `signal.pthread_kill`)",
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
            pattern, reason, *test = line.split("\t")
            reasons.append((re.compile(pattern), reason.strip(), re.compile(test[0]) if test else None))
    return reasons


def command(binary, tmp, module):
    cmd = [binary, "--quiet", "python", "--mount", tmp + ":/tmp:rw", "--env", "TMPDIR=/tmp", "--"]
    if module in PRELUDES:
        # `-c` hands the remaining arguments to regrtest in sys.argv[1:].
        cmd += ["-c", PRELUDES[module][0] + "from test.libregrtest import main\nmain()\n"]
    else:
        cmd += ["-m", "test"]
    return cmd + ["-v", "-u", RESOURCES, module]


def run_module(binary, lib_dir, tmp, module):
    start = time.monotonic()
    try:
        # One stream, so that tracebacks stay next to the test they belong to.
        proc = subprocess.run(command(binary, tmp, module), cwd=lib_dir, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TIMEOUT)
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out, code = e.stdout or b"", "timeout"
    return out.decode("utf-8", errors="replace"), code, time.monotonic() - start


SUMMARY = re.compile(r"^Ran (\d+) tests? in ")
RESULT = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$")
# unittest 3.11: "ERROR: test_x (pkg.mod.Class.test_x)", a subtest adds
# " (param=...)" or " [message]"; class and module fixtures print
# "ERROR: setUpClass (pkg.mod.Class)".
HEADER = re.compile(r"^(ERROR|FAIL): (\S+) \(([^)\s]+)\)(.*)$")
SKIP = re.compile(r"\.\.\. skipped (['\"])(.*)\1$")
MODULE_SKIP = re.compile(r"^(test_\w+) skipped -- (.*)$", re.M)
COUNT_KEYS = ("failures", "errors", "skipped", "expected_failures", "unexpected_successes")


def parse(out):
    """Tests run and unittest's summary counts, over every "Ran N tests" that
    is followed by its OK/FAILED line."""
    lines = out.splitlines()
    ran, counts, complete = 0, dict.fromkeys(COUNT_KEYS, 0), False
    for i, line in enumerate(lines):
        m = SUMMARY.match(line)
        if not m:
            continue
        result = next((RESULT.match(l) for l in lines[i + 1:i + 4] if l.strip()), None)
        if not result:
            continue
        ran += int(m.group(1))
        complete = True
        for part in (result.group(2) or "").split(", "):
            key, _, value = part.partition("=")
            key = key.strip().replace(" ", "_")
            if key in counts:
                counts[key] += int(value)
    return ran, counts, complete


def exception_line(block):
    """The final exception of one traceback block: the first unindented line
    after the last "Traceback (most recent call last):" (which regrtest's
    "test X crashed -- " puts in the middle of a line)."""
    starts = [i for i, l in enumerate(block) if "Traceback (most recent call last):" in l]
    for line in block[(starts[-1] + 1) if starts else 0:]:
        if line.strip() and not line.startswith((" ", "\t")):
            return line.strip()
    return "(no exception line)"


def failure_blocks(out):
    """(test id, is a test, exception line) for each ERROR/FAIL block; a
    failing subtest is a block of its own."""
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = HEADER.match(line)
        if not m or not lines[i - 1].startswith("=" * 20):
            continue
        name, where, rest = m.group(2), m.group(3), m.group(4).strip()
        block = []
        for follow in lines[i + 2:]:
            if follow.startswith("=" * 20) or follow.startswith("-" * 20):
                break
            block.append(follow)
        is_test = name not in ("setUpClass", "tearDownClass", "setUpModule", "tearDownModule")
        test_id = where if is_test and where.endswith("." + name) else "%s (%s)" % (name, where)
        found.append((test_id, rest, is_test, exception_line(block)))
    return found


def explain(reasons, text, test_id=""):
    for pattern, reason, test in reasons:
        if pattern.search(text) and (test is None or test.search(test_id)):
            return reason
    return "not yet classified"


def normalize(exc):
    """Group key of an exception line: numbers and addresses vary per test."""
    exc = re.sub(r"0x[0-9a-fA-F]+", "0x_", exc)
    exc = re.sub(r"/tmp/\S+", "/tmp/_", exc)
    return re.sub(r"\d+(\.\d+)?", "N", exc)[:160]


def add_class(classes, reason, exc, test_id):
    entry = classes.setdefault((reason, normalize(exc)), {"exc": exc[:160], "tests": []})
    entry["tests"].append(test_id)


def main():
    binary, tarball, out_md = sys.argv[1:4]
    binary = os.path.abspath(binary)
    modules = os.environ.get("REGRTEST_MODULES", "").split() or MODULES
    log_dir = os.environ.get("REGRTEST_LOG_DIR")
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    reasons = load_reasons()
    rows, classes, skips, env_changed = [], {}, {}, []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="regrtest-") as work:
        with tarfile.open(tarball) as tf:
            tf.extractall(work)
        lib_dir = os.path.join(work, "Lib")
        for module in modules:
            tmp = tempfile.mkdtemp(dir=work)
            out, code, seconds = run_module(binary, lib_dir, tmp, module)
            if log_dir:
                with open(os.path.join(log_dir, module + ".log"), "w") as f:
                    f.write(out)
            ran, c, complete = parse(out)
            blocks = failure_blocks(out)
            failed_tests = {t for t, _, is_test, _ in blocks if is_test}
            fixture_errors = [t for t, _, is_test, _ in blocks if not is_test]
            for test_id, subtest, _, exc in blocks:
                add_class(classes, explain(reasons, exc, test_id), exc, test_id + (" " + subtest if subtest else ""))
            for line in out.splitlines():
                m = SKIP.search(line)
                if m:
                    skips.setdefault(m.group(2).strip(), []).append(module)
            whole_skip = MODULE_SKIP.search(out)
            if code == "timeout":
                status = "timeout"
                add_class(classes, "timeout", "killed after %d s" % TIMEOUT, module)
            elif whole_skip and not complete:
                status = "skipped"
                msg = whole_skip.group(2).strip()
                add_class(classes, "whole module skipped: " + explain(reasons, msg, module), msg, module)
            elif not complete:
                status = "crash"
                exc = exception_line(out.splitlines()) if "Traceback" in out else \
                    ([l for l in out.splitlines() if l.strip()][-1:] or ["(no output)"])[0]
                add_class(classes, explain(reasons, exc, module), exc, module + " (whole module)")
            elif c["failures"] or c["errors"] or code != 0:
                status = "fail"
            else:
                status = "pass"
            if re.search(r"^%s failed \(env changed\)$" % module, out, re.M):
                what = sorted(set(re.findall(r"^Warning -- (.+?) was modified by ", out, re.M)))
                env_changed.append((module, what))
            doctests = sum(int(n) for n in re.findall(
                r"^doctest \(\S+\) \.\.\. (\d+) tests with zero failures$", out, re.M))
            counted = len(failed_tests) + c["skipped"] + c["expected_failures"] + c["unexpected_successes"]
            rows.append(dict(module=module, status=status, ran=ran, passed=max(ran - counted, 0),
                             failed=len(failed_tests), fixture=len(fixture_errors), skipped=c["skipped"],
                             xfail=c["expected_failures"] + c["unexpected_successes"],
                             unittest_failed=c["failures"] + c["errors"], doctests=doctests, seconds=seconds))
            print(f"{module}: {status}, ran {ran}, failed {len(failed_tests)} "
                  f"(unittest: failures+errors {c['failures'] + c['errors']}), skipped {c['skipped']}, "
                  f"{seconds:.0f} s", file=sys.stderr, flush=True)
    total_seconds = time.monotonic() - started
    partial = modules != MODULES
    text = render(rows, classes, skips, env_changed, total_seconds, partial)
    with open(out_md, "w") as f:
        f.write("<!-- generated by `make regrtest` (python-wasi/regrtest.py); do not edit -->\n")
        f.write("# CPython regression tests under wazero\n\n")
        f.write(text["main"] + "\n" + text["skips"])
    if partial:
        print("REGRTEST_MODULES is set: README.md left alone", file=sys.stderr)
    else:
        splice(os.path.join(HERE, "README.md"), "regrtest",
               text["main"] + "\nSkip reasons, by count: [REGRTEST.md](REGRTEST.md).\n")
    print(f"total {total_seconds:.0f} s", file=sys.stderr)


def md(text):
    return text.replace("|", "\\|")


def code(text):
    return "`" + text.replace("`", "'").replace("|", "/") + "`"


def render(rows, classes, skips, env_changed, total_seconds, partial):
    lines = []
    add = lines.append
    add("Each module runs in its own interpreter as `wsgi-wasm python -- -m test -v -u %s MODULE`, "
        "with CPython's `Lib/` (holding `Lib/test`) as the read-only current directory and a writable "
        "`/tmp`. The `-u` resources only make tests longer (all of decimaltestdata instead of a random "
        "tenth, the full Unicode normalization checks); network, subprocess and largefile stay off. "
        "`test_urlparse` is CPython 3.11's name for the `urllib.parse` tests." % RESOURCES)
    add("")
    for module, (_, why) in PRELUDES.items():
        add("- `%s` runs regrtest through `-c`, after putting into `sys.modules` %s." % (module, why))
    add("")
    add("Counts are unittest's, except *failed*: tests with at least one failing or erroring "
        "(sub)test, so that *passed* = run − failed − skipped. The whole run took %.0f s%s." %
        (total_seconds, " (modules picked by REGRTEST_MODULES only)" if partial else ""))
    add("")
    add("| module | result | tests run | passed | failed | skipped | seconds |")
    add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        add("| %s | %s | %d | %d | %d | %d | %.0f |" % (r["module"], r["status"], r["ran"], r["passed"],
                                                       r["failed"], r["skipped"], r["seconds"]))
    total = {k: sum(r[k] for r in rows) for k in ("ran", "passed", "failed", "skipped", "seconds")}
    add("| **all** | | %d | %d | %d | %d | %.0f |" % (total["ran"], total["passed"], total["failed"],
                                                     total["skipped"], total["seconds"]))
    add("")
    notes = []
    diff = [r for r in rows if r["unittest_failed"] != r["failed"]]
    if diff:
        notes.append("unittest's own failures+errors differ from *failed* (subtests or fixtures count "
                     "separately): " + ", ".join("%s %d" % (r["module"], r["unittest_failed"]) for r in diff))
    xfail = [r for r in rows if r["xfail"]]
    if xfail:
        notes.append("expected failures and unexpected successes, left out of *passed*: " +
                     ", ".join("%s %d" % (r["module"], r["xfail"]) for r in xfail))
    doc = [r for r in rows if r["doctests"]]
    if doc:
        notes.append("doctest examples the module also runs outside unittest (all passed; not in the counts): " +
                     ", ".join("%s %d" % (r["module"], r["doctests"]) for r in doc))
    path_only = [m for m, what in env_changed if what == ["sys.path"]]
    if path_only:
        notes.append("regrtest reported \"env changed\" (a warning, not a failure) for %s: unittest's "
                     "discovery of the test package puts its top folder `/` on `sys.path`, because "
                     "`sys.path[0]` is not `/` but `.` under `-m` (CPython makes it absolute with "
                     "`realpath()`, which this wasi-libc declares but does not define) or `''` under "
                     "`-c` (as on any platform)" % ", ".join(path_only))
    other = ["%s (%s)" % (m, ", ".join(what) or "?") for m, what in env_changed if what != ["sys.path"]]
    if other:
        notes.append("regrtest reported \"env changed\" (a warning, not a failure) for " + ", ".join(other))
    for note in notes:
        add("- " + note)
    if notes:
        add("")
    add("### Failure classes")
    add("")
    if not classes:
        add("None.")
    else:
        add("| reason | exception (first seen) | count | examples |")
        add("| --- | --- | ---: | --- |")
        for (reason, _), entry in sorted(classes.items(), key=lambda kv: (-len(kv[1]["tests"]), kv[0])):
            tests = entry["tests"]
            examples = ", ".join(sorted(set(tests))[:3]) + (", …" if len(set(tests)) > 3 else "")
            add("| %s | %s | %d | %s |" % (md(reason), code(entry["exc"]), len(tests), md(examples)))
    add("")
    skip_lines = ["### Skip reasons", "",
                  "What the skipped tests printed, most frequent first.", "",
                  "| skip message | count | modules |", "| --- | ---: | --- |"]
    for msg, mods in sorted(skips.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        skip_lines.append("| %s | %d | %s |" % (code(msg[:120]), len(mods), md(", ".join(sorted(set(mods))))))
    return {"main": "\n".join(lines), "skips": "\n".join(skip_lines) + "\n"}


if __name__ == "__main__":
    main()
