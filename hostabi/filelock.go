package hostabi

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero/api"
	"golang.org/x/sys/unix"
)

// FuncFileLock is the host function behind the guest's file locks: SQLite's
// and fcntl's (ABI.md "file_lock").
const FuncFileLock = "file_lock"

// Operations and lock types of file_lock (ABI.md "file_lock").
const (
	LockSet  = 0 // take or drop a lock, never waiting
	LockTest = 1 // report a lock of another guest in the way

	LockUnlock = 0
	LockRead   = 1
	LockWrite  = 2
)

// errnoNolck is WASI's ENOLCK: the file the guest has open is no longer at
// the path it was opened by, so the host cannot reach it to lock it.
const errnoNolck = 46

// FileLocks is one guest's table of the files it may lock (ABI.md
// "file_lock"): the regular files it has open through its mounts, by the
// device and inode number its fstat reports. The first lock of a file
// opens the host's own descriptor of it; the guest's locks are Linux
// open-file-description locks on that descriptor, so they exclude every
// other guest and process (another FileLocks, `wsgi-wasm exec`), merge and
// split as one POSIX process's locks do, and all go when the descriptor is
// closed: when the guest closes its last descriptor of the file, or the
// table is closed (the instance is closed, dropped or traps). Safe for
// concurrent use.
type FileLocks struct {
	mu     sync.Mutex
	files  map[fileID]*lockable
	closed bool
}

type fileID struct{ dev, ino uint64 }

type lockable struct {
	path     string // host path it was opened by
	writable bool   // on a writable mount: write locks allowed
	opens    int    // the guest's open descriptors of it
	f        *os.File
}

// NewFileLocks makes an empty table.
func NewFileLocks() *FileLocks { return &FileLocks{files: map[fileID]*lockable{}} }

// Opened records that the guest opened the regular file (dev, ino) by the
// host path path, on a writable mount or not.
func (t *FileLocks) Opened(dev, ino uint64, path string, writable bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	id := fileID{dev, ino}
	l := t.files[id]
	if l == nil {
		l = &lockable{path: path}
		t.files[id] = l
	}
	l.writable = l.writable || writable
	l.opens++
}

// Closed records that the guest closed one descriptor of (dev, ino); with
// the last one, the guest's locks of the file go.
func (t *FileLocks) Closed(dev, ino uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := fileID{dev, ino}
	l := t.files[id]
	if l == nil {
		return
	}
	if l.opens--; l.opens <= 0 {
		if l.f != nil {
			l.f.Close()
		}
		delete(t.files, id)
	}
}

// Holding is how many files the guest has locked or tried to lock and
// still has open: a snapshot must not be taken while it is above 0.
func (t *FileLocks) Holding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.files {
		if l.f != nil {
			n++
		}
	}
	return n
}

// Close drops every lock of the guest; later calls find no file.
func (t *FileLocks) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.files {
		if l.f != nil {
			l.f.Close()
		}
	}
	t.files, t.closed = map[fileID]*lockable{}, true
	return nil
}

type fileLocksKey struct{}

// WithFileLocks makes t the lock table of the guest calls made with ctx.
// Without one, file_lock grants every lock without locking, as the guest
// did before it had the call.
func WithFileLocks(ctx context.Context, t *FileLocks) context.Context {
	return context.WithValue(ctx, fileLocksKey{}, t)
}

// Lock is file_lock's work: its result as ABI.md "file_lock" says (0, a
// lock type for LockTest, or -errno).
func (t *FileLocks) Lock(dev, ino uint64, op, typ int32, start, length int64) int32 {
	if op != LockSet && op != LockTest || typ < LockUnlock || typ > LockWrite ||
		op == LockTest && typ == LockUnlock || start < 0 || length < 0 || length > 0 && start > 1<<63-1-length {
		return -errnoInval
	}
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.files[fileID{dev, ino}]
	switch {
	case l == nil:
		return -errnoBadf
	case op == LockSet && typ == LockWrite && !l.writable:
		return -errnoBadf // as Linux: a write lock needs a descriptor open for writing
	case l.f == nil && typ == LockUnlock:
		return 0 // never locked
	case l.f == nil:
		f, errno := openLockable(l.path, l.writable, dev, ino)
		if errno != 0 {
			return -errno
		}
		l.f = f
	}
	fl := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: start, Len: length}
	switch typ {
	case LockRead:
		fl.Type = unix.F_RDLCK
	case LockWrite:
		fl.Type = unix.F_WRLCK
	}
	cmd := unix.F_OFD_SETLK
	if op == LockTest {
		cmd = unix.F_OFD_GETLK
	}
	if err := unix.FcntlFlock(l.f.Fd(), cmd, &fl); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return -errnoAgain
		}
		if errors.Is(err, unix.ENOLCK) {
			return -errnoNolck
		}
		return -errnoIO
	}
	if op == LockTest {
		switch fl.Type {
		case unix.F_RDLCK:
			return LockRead
		case unix.F_WRLCK:
			return LockWrite
		}
	}
	return 0
}

// openLockable opens the host's lock descriptor of the file at path, which
// must still be the inode (dev, ino) the guest opened; it never follows a
// symlink nor blocks on a FIFO.
func openLockable(path string, writable bool, dev, ino uint64) (*os.File, int32) {
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, errnoNolck
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || uint64(st.Dev) != dev || uint64(st.Ino) != ino {
		f.Close()
		return nil, errnoNolck
	}
	return f, 0
}

// fileLock: ABI.md "file_lock".
func fileLock(ctx context.Context, _ api.Module, stack []uint64) {
	t, _ := ctx.Value(fileLocksKey{}).(*FileLocks)
	r := t.Lock(stack[0], stack[1], int32(stack[2]), int32(stack[3]), int64(stack[4]), int64(stack[5]))
	stack[0] = uint64(uint32(r))
}
