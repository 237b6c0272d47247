package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

func runPython(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := testEngine(t).RunCommand(context.Background(), sandbox.Command{
		Args: args, Dir: dir, Stdout: &out, Stderr: &errb,
	})
	if err != nil {
		t.Fatalf("RunCommand: %v\nstderr: %s", err, errb.String())
	}
	return out.String(), errb.String(), code
}

// TestCommandRealWork runs the compiled-in modules the product depends on and
// checks their results against values computed independently.
func TestCommandRealWork(t *testing.T) {
	script := `
import zlib, sqlite3, json, hashlib, decimal, sys, os, importlib.util
data = b"wsgi-wasm " * 1000
assert zlib.decompress(zlib.compress(data, 9)) == data
print("zlib", len(zlib.compress(data, 9)) < len(data))
db = sqlite3.connect(":memory:")
db.execute("create table t (k text primary key, v integer)")
db.executemany("insert into t values (?, ?)", [("a", 1), ("b", 2), ("c", 39)])
print("sqlite", db.execute("select sum(v) from t").fetchone()[0], sqlite3.sqlite_version)
decimal.getcontext().prec = 30
print("decimal", decimal.Decimal(1) / decimal.Decimal(7))
print("sha256", hashlib.sha256(b"abc").hexdigest())
print("json", json.loads(json.dumps({"a": [1, 2.5, None, "\u00e9"]})) == {"a": [1, 2.5, None, "\u00e9"]})
spec = importlib.util.find_spec("email.mime.text")
print("pyc", type(spec.loader).__name__, spec.origin.endswith(".pyc"), "python311.zip" in spec.origin)
import email.mime.text
print("md5", hashlib.md5(b"").hexdigest(), "blake2b", hashlib.blake2b(b"x", digest_size=4).hexdigest(), "sha3", hashlib.sha3_256(b"").hexdigest()[:8])
`
	out, errOut, code := runPython(t, "", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	want := []string{
		"zlib True",
		"sqlite 42 3.40.1",
		"decimal 0.142857142857142857142857142857",
		"sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"json True",
		"pyc zipimporter True True",
		"md5 d41d8cd98f00b204e9800998ecf8427e blake2b b1ba07e5 sha3 a7ffc6f8",
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Errorf("line %d = %q, want %q\nall output:\n%s", i, at(lines, i), w, out)
		}
	}
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<missing>"
}

// TestCommandStoppedAtDeadline: a command that spins or sleeps ends soon
// after its context does, through the interrupt word its loop heads read
// (ABI.md "Interruption"), and while it spins Go's garbage collector still
// gets to run (its check-ins are where the scheduler can stop it).
func TestCommandStoppedAtDeadline(t *testing.T) {
	eng := testEngine(t)
	for _, tc := range []struct{ name, code string }{
		{"spin", "while True: pass"},
		{"sleep", "import time; time.sleep(600)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var errb bytes.Buffer
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := eng.RunCommand(ctx, sandbox.Command{Args: []string{"-c", tc.code}, Stderr: &errb})
				done <- err
			}()
			time.Sleep(500 * time.Millisecond)
			gcStart := time.Now()
			runtime.GC()
			if took := time.Since(gcStart); took > 1500*time.Millisecond {
				t.Errorf("a garbage collection beside the running command took %v", took)
			}
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("RunCommand = %v, want the deadline\nstderr: %s", err, errb.String())
				}
				if took := time.Since(start); took < 2*time.Second {
					t.Fatalf("the command ended after %v, before its 2 s deadline", took)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the command still runs 28 s after its deadline")
			}
		})
	}
}

func TestCommandExitCodeAndStdio(t *testing.T) {
	out, errOut, code := runPython(t, "", "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(7)")
	if code != 7 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("code=%d out=%q err=%q", code, out, errOut)
	}
	_, errOut, code = runPython(t, "", "-c", "raise ValueError('boom')")
	if code != 1 || !strings.Contains(errOut, "ValueError: boom") {
		t.Fatalf("code=%d err=%q", code, errOut)
	}
}

// TestCommandMountsWorkingDirReadOnly runs a script from the mounted folder
// and checks that the guest cannot write there or see the host's files.
func TestCommandMountsWorkingDirReadOnly(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.py"), []byte("import sys\nprint('hi', sys.argv[1:])\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runPython(t, dir, "hello.py", "x")
	if code != 0 || out != "hi ['x']\n" {
		t.Fatalf("code=%d out=%q err=%q", code, out, errOut)
	}
	script := `
import os
try:
    open("new.txt", "w")
    print("wrote")
except OSError as e:
    print("denied", e.errno is not None)
print(os.path.exists("/etc/passwd"), sorted(os.environ) == ["PYTHONHOME"])
`
	out, errOut, code = runPython(t, dir, "-c", script)
	if code != 0 || out != "denied True\nFalse True\n" {
		t.Fatalf("code=%d out=%q err=%q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.txt")); err == nil {
		t.Fatal("guest created a file in a read-only mount")
	}
}

// TestCommandClocksAndRandom checks that time.sleep really sleeps, the wall
// clock is real and os.urandom is not constant.
func TestCommandClocksAndRandom(t *testing.T) {
	script := `
import time, os
t0 = time.monotonic(); time.sleep(0.05); slept = time.monotonic() - t0
print(slept >= 0.045, abs(time.time() - NOW) < 60, os.urandom(16) != os.urandom(16))
`
	now := strings.Replace(script, "NOW", nowUnix(), 1)
	out, errOut, code := runPython(t, "", "-c", now)
	if code != 0 || out != "True True True\n" {
		t.Fatalf("code=%d out=%q err=%q", code, out, errOut)
	}
}

// TestCommandDevNull: os.devnull works in a command as in an instance, and
// /dev holds nothing else.
func TestCommandDevNull(t *testing.T) {
	out, stderr, code := runPython(t, "", "-c", `import os
open(os.devnull, "w").write("gone")
print(len(open(os.devnull, "rb").read()), os.listdir("/dev"))`)
	if code != 0 || out != "0 ['null']\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, stderr)
	}
}
