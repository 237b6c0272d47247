package hostabi_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// lockFile makes a file and returns its path, device and inode.
func lockFile(t testing.TB) (string, uint64, uint64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return p, uint64(st.Dev), uint64(st.Ino)
}

// opened is a lock table in which the guest has the file open.
func opened(t *testing.T, path string, dev, ino uint64, writable bool) *hostabi.FileLocks {
	t.Helper()
	l := hostabi.NewFileLocks()
	t.Cleanup(func() { l.Close() })
	l.Opened(dev, ino, path, writable)
	return l
}

// TestFileLockArguments: file_lock's argument checks (ABI.md "file_lock"),
// each with its errno, before any lock is taken.
func TestFileLockArguments(t *testing.T) {
	path, dev, ino := lockFile(t)
	l := opened(t, path, dev, ino, true)
	ro := opened(t, path, dev, ino, false)
	const big = 1<<63 - 1
	for _, c := range []struct {
		name       string
		l          *hostabi.FileLocks
		dev, ino   uint64
		op, typ    int32
		start, len int64
		want       int32
	}{
		{"read lock", l, dev, ino, hostabi.LockSet, hostabi.LockRead, 0, 0, 0},
		{"unlock", l, dev, ino, hostabi.LockSet, hostabi.LockUnlock, 0, 0, 0},
		{"test", l, dev, ino, hostabi.LockTest, hostabi.LockWrite, 0, 0, 0},
		{"SQLite's pending byte", l, dev, ino, hostabi.LockSet, hostabi.LockWrite, 0x40000000, 1, 0},
		{"to the last byte", l, dev, ino, hostabi.LockSet, hostabi.LockRead, big - 1, 1, 0},
		{"unknown op", l, dev, ino, 2, hostabi.LockRead, 0, 0, -28},
		{"negative op", l, dev, ino, -1, hostabi.LockRead, 0, 0, -28},
		{"unknown type", l, dev, ino, hostabi.LockSet, 3, 0, 0, -28},
		{"test for unlock", l, dev, ino, hostabi.LockTest, hostabi.LockUnlock, 0, 0, -28},
		{"negative start", l, dev, ino, hostabi.LockSet, hostabi.LockRead, -1, 0, -28},
		{"negative len", l, dev, ino, hostabi.LockSet, hostabi.LockRead, 0, -1, -28},
		{"past 2^63", l, dev, ino, hostabi.LockSet, hostabi.LockRead, big, 2, -28},
		{"not open", l, dev, ino + 1, hostabi.LockSet, hostabi.LockRead, 0, 0, -8},
		{"other device", l, dev + 1, ino, hostabi.LockSet, hostabi.LockRead, 0, 0, -8},
		{"write on a read-only mount", ro, dev, ino, hostabi.LockSet, hostabi.LockWrite, 0, 0, -8},
		{"read on a read-only mount", ro, dev, ino, hostabi.LockSet, hostabi.LockRead, 0, 1, 0},
		{"test for write on a read-only mount", ro, dev, ino, hostabi.LockTest, hostabi.LockWrite, 1, 1, 0},
		{"no table grants", nil, dev, ino, hostabi.LockSet, hostabi.LockWrite, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.l.Lock(c.dev, c.ino, c.op, c.typ, c.start, c.len); got != c.want {
				t.Fatalf("Lock = %d, want %d", got, c.want)
			}
		})
	}
}

// TestFileLockConflicts: two tables (two instances) exclude each other as
// two processes do; one table's own locks never conflict; closing the
// last descriptor of the file, or the table, drops its locks.
func TestFileLockConflicts(t *testing.T) {
	path, dev, ino := lockFile(t)
	a := opened(t, path, dev, ino, true)
	b := opened(t, path, dev, ino, true)
	const reserved = 0x40000001
	set := func(l *hostabi.FileLocks, typ int32, start, n int64) int32 {
		return l.Lock(dev, ino, hostabi.LockSet, typ, start, n)
	}
	test := func(l *hostabi.FileLocks, typ int32, start, n int64) int32 {
		return l.Lock(dev, ino, hostabi.LockTest, typ, start, n)
	}
	if r := set(a, hostabi.LockWrite, reserved, 1); r != 0 {
		t.Fatalf("a's write lock: %d", r)
	}
	if r := set(a, hostabi.LockRead, reserved, 1); r != 0 {
		t.Fatalf("a's own lock conflicted: %d", r)
	}
	if r := test(b, hostabi.LockWrite, reserved, 1); r != hostabi.LockRead {
		t.Fatalf("b's test: %d, want a's read lock (1)", r)
	}
	if r := set(b, hostabi.LockRead, reserved, 1); r != 0 {
		t.Fatalf("b's read lock beside a's: %d", r)
	}
	if r := set(b, hostabi.LockWrite, 0, 0); r != -6 {
		t.Fatalf("b's write lock over a's: %d, want -6", r)
	}
	if r := set(b, hostabi.LockWrite, 0, reserved); r != 0 {
		t.Fatalf("b's write lock below a's: %d", r)
	}
	if r := set(a, hostabi.LockUnlock, 0, 0); r != 0 {
		t.Fatal(r)
	}
	if r := set(b, hostabi.LockWrite, 0, 0); r != 0 {
		t.Fatalf("b's write lock once a unlocked: %d", r)
	}
	// Two descriptors of the file in b: closing one keeps the lock.
	b.Opened(dev, ino, path, true)
	b.Closed(dev, ino)
	if r := test(a, hostabi.LockRead, 0, 0); r != hostabi.LockWrite {
		t.Fatalf("a's test with b holding: %d", r)
	}
	if n := b.Holding(); n != 1 {
		t.Fatalf("b holds %d files", n)
	}
	b.Closed(dev, ino)
	if r := set(a, hostabi.LockWrite, 0, 0); r != 0 {
		t.Fatalf("a's write lock once b closed the file: %d", r)
	}
	if r := set(b, hostabi.LockRead, 0, 0); r != -8 {
		t.Fatalf("b locked a file it closed: %d", r)
	}
	a.Close()
	c := opened(t, path, dev, ino, true)
	if r := set(c, hostabi.LockWrite, 0, 0); r != 0 {
		t.Fatalf("after a's table closed: %d", r)
	}
}

// TestFileLockMovedFile: a file no longer at the path it was opened by
// cannot be locked (ENOLCK): the host never locks what is there instead.
func TestFileLockMovedFile(t *testing.T) {
	path, dev, ino := lockFile(t)
	l := opened(t, path, dev, ino, true)
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := l.Lock(dev, ino, hostabi.LockSet, hostabi.LockRead, 0, 0); r != -46 {
		t.Fatalf("Lock = %d, want -46", r)
	}
}

// FuzzFileLock: whatever the guest passes, file_lock answers one of the
// results ABI.md "file_lock" lists, refuses a bad range with EINVAL, and
// sets nothing but 0.
func FuzzFileLock(f *testing.F) {
	f.Add(int32(0), int32(2), int64(0x40000000), int64(1))
	f.Add(int32(1), int32(1), int64(0), int64(0))
	f.Add(int32(0), int32(0), int64(-1), int64(5))
	f.Add(int32(7), int32(-3), int64(1<<62), int64(1<<62))
	path, dev, ino := lockFile(f)
	l := hostabi.NewFileLocks()
	defer l.Close()
	l.Opened(dev, ino, path, true)
	f.Fuzz(func(t *testing.T, op, typ int32, start, n int64) {
		r := l.Lock(dev, ino, op, typ, start, n)
		switch r {
		case 0, -28:
		case hostabi.LockRead, hostabi.LockWrite:
			if op != hostabi.LockTest {
				t.Fatalf("Lock(%d, %d, %d, %d) = %d: only a test reports a lock type", op, typ, start, n, r)
			}
		default:
			t.Fatalf("Lock(%d, %d, %d, %d) = %d, not a result of ABI.md", op, typ, start, n, r)
		}
		if (start < 0 || n < 0) && r != -28 {
			t.Fatalf("Lock(%d, %d, %d, %d) = %d, want EINVAL", op, typ, start, n, r)
		}
	})
}
