package sandbox

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// confinedFS serves a host folder to the guest without ever resolving a path
// outside it. wazero's own directory mount follows host symlinks, so a guest
// with a writable mount could create a link to /etc and read through it.
// Here the guest can create neither symlinks nor hard links, and every path
// is refused (ENOENT, as if absent) when any of its components on the host
// is a symlink, so links placed by someone else are not followed either.
// Only regular files and folders are opened (a FIFO would block the host
// thread, out of reach of the deadline), every open counts against the
// instance's fileBudget, and every regular file open is in the instance's
// table of lockable files (hostabi.FileLocks) until closed.
type confinedFS struct {
	root     string
	fs       experimentalsys.FS
	writable bool
	budget   *fileBudget
	locks    *hostabi.FileLocks
}

// newConfinedFS mounts root, read-only unless writable; its open files
// count against budget and may be locked through locks.
func newConfinedFS(root string, writable bool, budget *fileBudget, locks *hostabi.FileLocks) *confinedFS {
	var inner experimentalsys.FS = sysfs.DirFS(root)
	if !writable {
		inner = &sysfs.ReadFS{FS: inner}
	}
	return &confinedFS{root: root, fs: inner, writable: writable, budget: budget, locks: locks}
}

// MaxOpenFiles bounds the files and folders one instance holds open at
// once, its mounts' roots included; past it an open fails with EAGAIN
// (BlockingIOError, an OSError, in Python: wazero's errors lack EMFILE).
// Open files outlive requests,
// so without a bound one request could take every descriptor of the
// process and stop accept() for every tenant.
const MaxOpenFiles = 128

// fileBudget counts one instance's open files.
type fileBudget struct {
	open atomic.Int32
}

func (b *fileBudget) take() bool {
	if b.open.Add(1) > MaxOpenFiles {
		b.open.Add(-1)
		return false
	}
	return true
}

func (b *fileBudget) give() { b.open.Add(-1) }

// check reports ENOENT unless every existing component of p below the root
// is a plain file or folder; ".." may not climb out of the root.
func (c *confinedFS) check(p string) experimentalsys.Errno {
	clean := path.Clean("/" + p)
	if strings.Contains(clean, "/../") || strings.HasSuffix(clean, "/..") {
		return experimentalsys.ENOENT
	}
	host := c.root
	for _, part := range strings.Split(strings.TrimPrefix(clean, "/"), "/") {
		if part == "" {
			continue
		}
		host = filepath.Join(host, part)
		st, err := os.Lstat(host)
		if err != nil {
			return 0 // the rest does not exist yet; the operation reports it
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return experimentalsys.ENOENT
		}
	}
	return 0
}

// OpenFile opens non-blocking, refuses what is neither a regular file nor a
// folder (EACCES), then restores the blocking mode the guest asked for.
func (c *confinedFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if e := c.check(p); e != 0 {
		return nil, e
	}
	if !c.budget.take() {
		return nil, experimentalsys.EAGAIN
	}
	f, e := c.fs.OpenFile(p, flag|experimentalsys.O_NOFOLLOW|experimentalsys.O_NONBLOCK, perm)
	if e != 0 {
		c.budget.give()
		return nil, e
	}
	st, e := f.Stat()
	if e == 0 && !st.Mode.IsRegular() && !st.Mode.IsDir() {
		e = experimentalsys.EACCES
	}
	if pf, ok := f.(experimentalsys.PollableFile); e == 0 && ok && flag&experimentalsys.O_NONBLOCK == 0 && st.Mode.IsRegular() {
		e = pf.SetNonblock(false)
	}
	if e != 0 {
		f.Close()
		c.budget.give()
		return nil, e
	}
	bf := &budgetedFile{pollable: pollable{f}, budget: c.budget}
	if st.Mode.IsRegular() && c.locks != nil {
		bf.locks, bf.dev, bf.ino = c.locks, st.Dev, st.Ino
		c.locks.Opened(st.Dev, st.Ino, filepath.Join(c.root, filepath.FromSlash(path.Clean("/"+p))), c.writable)
	}
	return bf, 0
}

// budgetedFile gives its place in the budget back when closed, and leaves
// the table of lockable files.
type budgetedFile struct {
	pollable
	budget   *fileBudget
	locks    *hostabi.FileLocks
	dev, ino uint64
	closed   atomic.Bool
}

func (f *budgetedFile) Close() experimentalsys.Errno {
	if f.closed.CompareAndSwap(false, true) {
		f.budget.give()
		if f.locks != nil {
			f.locks.Closed(f.dev, f.ino)
		}
	}
	return f.File.Close()
}

// pollable wraps a file, passing Poll, IsNonblock and SetNonblock through
// to it, as wazero looks for them (experimentalsys.PollableFile).
type pollable struct{ experimentalsys.File }

func (f pollable) Poll(flag experimentalsys.Pflag, timeoutMillis int32) (bool, experimentalsys.Errno) {
	if pf, ok := f.File.(experimentalsys.PollableFile); ok {
		return pf.Poll(flag, timeoutMillis)
	}
	return false, experimentalsys.ENOSYS
}

func (f pollable) IsNonblock() bool {
	pf, ok := f.File.(experimentalsys.PollableFile)
	return ok && pf.IsNonblock()
}

func (f pollable) SetNonblock(enable bool) experimentalsys.Errno {
	if pf, ok := f.File.(experimentalsys.PollableFile); ok {
		return pf.SetNonblock(enable)
	}
	return experimentalsys.ENOSYS
}

func (c *confinedFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if e := c.check(p); e != 0 {
		return sys.Stat_t{}, e
	}
	return c.fs.Lstat(p)
}

func (c *confinedFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if e := c.check(p); e != 0 {
		return sys.Stat_t{}, e
	}
	return c.fs.Stat(p)
}

func (c *confinedFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if e := c.check(p); e != 0 {
		return e
	}
	return c.fs.Mkdir(p, perm)
}

func (c *confinedFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	if e := c.check(p); e != 0 {
		return e
	}
	return c.fs.Chmod(p, perm)
}

func (c *confinedFS) Rename(from, to string) experimentalsys.Errno {
	if e := c.check(from); e != 0 {
		return e
	}
	if e := c.check(to); e != 0 {
		return e
	}
	return c.fs.Rename(from, to)
}

func (c *confinedFS) Rmdir(p string) experimentalsys.Errno {
	if e := c.check(p); e != 0 {
		return e
	}
	return c.fs.Rmdir(p)
}

func (c *confinedFS) Unlink(p string) experimentalsys.Errno {
	if e := c.check(p); e != 0 {
		return e
	}
	return c.fs.Unlink(p)
}

// Link is refused: a hard link to a file outside is as good as a symlink.
func (c *confinedFS) Link(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

// Symlink is refused, so the guest cannot plant links.
func (c *confinedFS) Symlink(_, _ string) experimentalsys.Errno { return experimentalsys.EPERM }

// Readlink finds nothing: no path the guest can reach is a link.
func (c *confinedFS) Readlink(p string) (string, experimentalsys.Errno) {
	if e := c.check(p); e != 0 {
		return "", e
	}
	return "", experimentalsys.EINVAL
}

func (c *confinedFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	if e := c.check(p); e != 0 {
		return e
	}
	return c.fs.Utimens(p, atim, mtim)
}

// lockingFS is a plain directory mount of `wsgi-wasm python` (wazero's own,
// which follows links: the command runs the operator's code, not a
// tenant's) whose regular files are recorded in the command's lock table,
// so that its SQLite and fcntl locks are real as an instance's are.
type lockingFS struct {
	experimentalsys.FS
	root     string
	writable bool
	locks    *hostabi.FileLocks
}

func newLockingFS(root string, writable bool, locks *hostabi.FileLocks) *lockingFS {
	var inner experimentalsys.FS = sysfs.DirFS(root)
	if !writable {
		inner = &sysfs.ReadFS{FS: inner}
	}
	return &lockingFS{FS: inner, root: root, writable: writable, locks: locks}
}

func (l *lockingFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	f, e := l.FS.OpenFile(p, flag, perm)
	if e != 0 {
		return nil, e
	}
	st, e := f.Stat()
	if e != 0 || !st.Mode.IsRegular() {
		return f, 0
	}
	l.locks.Opened(st.Dev, st.Ino, filepath.Join(l.root, filepath.FromSlash(path.Clean("/"+p))), l.writable)
	lf := &lockedFile{File: f, locks: l.locks, dev: st.Dev, ino: st.Ino}
	if pf, ok := f.(experimentalsys.PollableFile); ok {
		// Pollable only when wazero's own file is (a read-only mount's is
		// not), so that wazero treats it as it would unwrapped.
		return &lockedPollable{lockedFile: lf, p: pf}, 0
	}
	return lf, 0
}

// lockedFile leaves the lock table when closed.
type lockedFile struct {
	experimentalsys.File
	locks    *hostabi.FileLocks
	dev, ino uint64
	closed   atomic.Bool
}

// lockedPollable is a lockedFile of a pollable file.
type lockedPollable struct {
	*lockedFile
	p experimentalsys.PollableFile
}

func (f *lockedPollable) Poll(flag experimentalsys.Pflag, timeoutMillis int32) (bool, experimentalsys.Errno) {
	return f.p.Poll(flag, timeoutMillis)
}

func (f *lockedPollable) IsNonblock() bool { return f.p.IsNonblock() }

func (f *lockedPollable) SetNonblock(enable bool) experimentalsys.Errno {
	return f.p.SetNonblock(enable)
}

func (f *lockedFile) Close() experimentalsys.Errno {
	if f.closed.CompareAndSwap(false, true) {
		f.locks.Closed(f.dev, f.ino)
	}
	return f.File.Close()
}
