package sandbox_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestFcntlLockFileApp serves an app that guards a counter in its data
// folder with a lock file, as filelock and portalocker do, from two
// instances at once: fcntl imports, the lock calls lock for real (through
// the host), and no update is lost although the requests run side by side.
func TestFcntlLockFileApp(t *testing.T) {
	results, logs := postToDataApp(t, "lockfile:app", 20)
	var seen []int
	for _, r := range results {
		code, body, _ := strings.Cut(r, " ")
		v, err := strconv.Atoi(body)
		if code != "200" || err != nil {
			t.Fatalf("response %q; log:\n%s", r, logs)
		}
		seen = append(seen, v)
	}
	inSequence(t, seen, "an update was lost under the lock file")
}

// TestCommandFcntl: the fcntl module of the command form checks what Linux
// checks (the operation, whence, the descriptor), locks through the host
// (its own locks never conflict; a write lock on the read-only mount is
// EBADF), reports descriptor flags as WASI has them, and accepts
// O_NONBLOCK on a regular file as Linux does (wazero refuses it).
func TestCommandFcntl(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runPython(t, dir, "-c", `import errno, fcntl, os, struct
fd = os.open("f.txt", os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
fcntl.flock(fd, fcntl.LOCK_UN)
fcntl.lockf(fd, fcntl.LOCK_SH, 0, 0, os.SEEK_SET)
print(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC == fcntl.FD_CLOEXEC)
print(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK == 0)
lk = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
print(struct.unpack("hhqqi", lk)[0] == fcntl.F_UNLCK)
print(fcntl.fcntl(fd, fcntl.F_SETLKW, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 0, 0)) != b"")
for bad in (lambda: fcntl.flock(fd, 3), lambda: fcntl.lockf(fd, fcntl.LOCK_SH, 0, 0, 7),
            lambda: fcntl.fcntl(fd, fcntl.F_SETLK, b"short")):
    try:
        bad()
    except OSError as e:
        print(e.errno == errno.EINVAL or e.errno)
try:
    fcntl.flock(fd, fcntl.LOCK_EX)
except OSError as e:
    print(e.errno == errno.EBADF or e.errno)
try:
    fcntl.ioctl(fd, 0x5413, b"\0" * 8)  # TIOCGWINSZ: no terminal here
except OSError as e:
    print(e.errno == errno.ENOTTY or e.errno)
os.close(fd)
try:
    fcntl.flock(fd, fcntl.LOCK_SH)
except OSError as e:
    print(e.errno == errno.EBADF or e.errno)
with open("f.txt") as f:
    fcntl.flock(f, fcntl.LOCK_SH)
    print(fcntl.fcntl(f, fcntl.F_SETFL, os.O_NONBLOCK) == 0)`)
	want := strings.Repeat("True\n", 11)
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q (want %q), stderr %s", code, out, want, stderr)
	}
}

// TestCommandLocksBesideInstance: `wsgi-wasm python` with a tenant's data
// folder mounted sees an instance's SQLite lock, as exec does.
func TestCommandLocksBesideInstance(t *testing.T) {
	insts, logs, data := dataInstances(t, 1)
	mustCall(t, insts[0], logs, "/count")
	held := make(chan string, 1)
	go func() { held <- mustCall(t, insts[0], logs, "/hold?ms=1500") }()
	script := `import sqlite3, time
for _ in range(100):
    db = sqlite3.connect("/data/lock.db", timeout=0, isolation_level=None)
    try:
        db.execute("begin immediate")
        db.execute("rollback")
    except sqlite3.OperationalError as e:
        print(e)
        break
    finally:
        db.close()
    time.sleep(0.01)
db = sqlite3.connect("/data/lock.db", timeout=20, isolation_level=None)
print(db.execute("select v from c").fetchone()[0])`
	var out, errb bytes.Buffer
	code, err := testEngine(t).RunCommand(context.Background(), sandbox.Command{
		Args: []string{"-c", script}, Mounts: []sandbox.Mount{{Host: data, Guest: "/data", Writable: true}},
		Stdout: &out, Stderr: &errb,
	})
	if err != nil || code != 0 || out.String() != "database is locked\n1000\n" {
		t.Fatalf("python: %d, %v, out %q, err %s", code, err, out.String(), errb.String())
	}
	if body := <-held; body != "held" {
		t.Fatalf("instance: %q", body)
	}
}
