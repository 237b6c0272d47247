package sandbox

import (
	"io"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// dataQuota is what one writable data folder may hold: the sizes of its
// regular files, summed, at most limit bytes, and at most MaxDataFiles
// entries. It is shared by every instance that mounts the folder (the
// folder's lock lets one of them write at a time). Writes that would pass
// it fail with EIO, wazero's WASI layer having no ENOSPC.
type dataQuota struct {
	dir     string
	limit   atomic.Int64
	used    atomic.Int64 // bytes
	entries atomic.Int64
	refused atomic.Int64 // writes refused, for the metric
	// writeMu makes each write's reserve, write and settle one step, so
	// that two instances writing at once (a start beside a request) do not
	// count each other's growth.
	writeMu sync.Mutex
	// openMu guards the files open through the quota, by inode, and those
	// of them removed while open: their space is freed at the last close.
	openMu  sync.Mutex
	opens   map[uint64]int
	orphans map[uint64]bool
	// warned limits the log line to one a minute.
	warnedMu sync.Mutex
	warned   time.Time
}

// MaxDataFiles bounds the files and folders of one data folder.
const MaxDataFiles = 100_000

// dataQuota returns the quota of the data folder dir with limit bytes,
// measuring the folder on first use; a later call with another limit (a
// reloaded policy) changes it.
func (e *Engine) dataQuota(dir string, limit int64) *dataQuota {
	dir = filepath.Clean(dir)
	v, loaded := e.dataQuotas.Load(dir)
	if !loaded {
		q := &dataQuota{dir: dir, opens: map[uint64]int{}, orphans: map[uint64]bool{}}
		var used, entries int64
		err := tenantfs.Walk(dir, func(en tenantfs.Entry) error {
			entries++
			if en.Type.IsRegular() {
				used += en.Info.Size()
			}
			return nil
		})
		if err != nil {
			// Not measured (nested too deep, unreadable): counted as full
			// rather than under-counted.
			e.log.Warn("data folder not measured; its quota counts it as full", "dir", dir, "err", err)
			used = math.MaxInt64 / 2
		}
		q.used.Store(used)
		q.entries.Store(entries)
		v, _ = e.dataQuotas.LoadOrStore(dir, q)
	}
	q := v.(*dataQuota)
	q.limit.Store(limit)
	return q
}

// DataUsage reports what the data folder dir holds and how many writes
// its quota has refused, for a folder some instance has mounted.
func (e *Engine) DataUsage(dir string) (used, limit, refused int64, ok bool) {
	v, ok := e.dataQuotas.Load(filepath.Clean(dir))
	if !ok {
		return 0, 0, 0, false
	}
	q := v.(*dataQuota)
	return q.used.Load(), q.limit.Load(), q.refused.Load(), true
}

// grow takes n more bytes, or reports false (and counts the refusal).
func (q *dataQuota) grow(n int64, log GuestLog) bool {
	if n <= 0 {
		q.used.Add(n)
		return true
	}
	for {
		used := q.used.Load()
		if used+n > q.limit.Load() {
			q.refuse(log)
			return false
		}
		if q.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// create takes one more entry, or reports false.
func (q *dataQuota) create(log GuestLog) bool {
	if q.entries.Add(1) > MaxDataFiles {
		q.entries.Add(-1)
		q.refuse(log)
		return false
	}
	return true
}

func (q *dataQuota) refuse(log GuestLog) {
	q.refused.Add(1)
	q.warnedMu.Lock()
	defer q.warnedMu.Unlock()
	if log != nil && time.Since(q.warned) > time.Minute {
		q.warned = time.Now()
		log(slog.LevelError, []byte("wsgi-wasm: the data folder is full (its policy's data_max_mb or 100000 files); writes fail with OSError until files are removed"))
	}
}

// quotaFS is the data folder's file system with its quota applied.
type quotaFS struct {
	experimentalsys.FS
	q   *dataQuota
	log GuestLog
}

// size is the bytes p holds (0 for a folder) and whether it exists.
func (f *quotaFS) size(p string) (int64, bool) {
	st, e := f.FS.Lstat(p)
	if e != 0 {
		return 0, false
	}
	if !st.Mode.IsRegular() {
		return 0, true
	}
	return st.Size, true
}

// removed accounts for the entry at p that is about to go (unlinked, or
// renamed over), whose stat is st: its bytes are freed now, or at its last
// close if it is open.
func (q *dataQuota) removed(st sys.Stat_t) {
	q.entries.Add(-1)
	if !st.Mode.IsRegular() {
		return
	}
	q.openMu.Lock()
	defer q.openMu.Unlock()
	if q.opens[st.Ino] > 0 {
		q.orphans[st.Ino] = true
		return
	}
	q.grow(-st.Size, nil)
}

// closed forgets one open of ino, freeing size bytes if it was the last
// open of a removed file.
func (q *dataQuota) closed(ino uint64, size int64) {
	q.openMu.Lock()
	defer q.openMu.Unlock()
	if q.opens[ino]--; q.opens[ino] > 0 {
		return
	}
	delete(q.opens, ino)
	if q.orphans[ino] {
		delete(q.orphans, ino)
		q.grow(-size, nil)
	}
}

func (f *quotaFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	before, existed := f.size(p)
	if !existed && flag&experimentalsys.O_CREAT != 0 && !f.q.create(f.log) {
		return nil, experimentalsys.EIO
	}
	file, e := f.FS.OpenFile(p, flag, perm)
	if e != 0 {
		if !existed && flag&experimentalsys.O_CREAT != 0 {
			f.q.entries.Add(-1)
		}
		return nil, e
	}
	st, e := file.Stat()
	if e != 0 {
		file.Close()
		return nil, e
	}
	if existed && flag&experimentalsys.O_TRUNC != 0 {
		f.q.grow(-before, nil)
	}
	if !st.Mode.IsRegular() {
		return file, 0
	}
	f.q.openMu.Lock()
	f.q.opens[st.Ino]++
	f.q.openMu.Unlock()
	return &quotaFile{pollable: pollable{file}, q: f.q, log: f.log, ino: st.Ino, appends: flag&experimentalsys.O_APPEND != 0}, 0
}

func (f *quotaFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if !f.q.create(f.log) {
		return experimentalsys.EIO
	}
	e := f.FS.Mkdir(p, perm)
	if e != 0 {
		f.q.entries.Add(-1)
	}
	return e
}

func (f *quotaFS) Unlink(p string) experimentalsys.Errno {
	st, e := f.FS.Lstat(p)
	if e != 0 {
		return e
	}
	if e = f.FS.Unlink(p); e == 0 {
		f.q.removed(st)
	}
	return e
}

func (f *quotaFS) Rmdir(p string) experimentalsys.Errno {
	e := f.FS.Rmdir(p)
	if e == 0 {
		f.q.entries.Add(-1)
	}
	return e
}

// Rename over an existing entry removes the entry replaced; a rename of a
// file onto itself (the same inode) changes nothing.
func (f *quotaFS) Rename(from, to string) experimentalsys.Errno {
	src, e := f.FS.Lstat(from)
	if e != 0 {
		return e
	}
	dst, de := f.FS.Lstat(to)
	same := de == 0 && dst.Dev == src.Dev && dst.Ino == src.Ino
	if e = f.FS.Rename(from, to); e == 0 && de == 0 && !same {
		f.q.removed(dst)
	}
	return e
}

// quotaFile is a regular file of the data folder: what a write or truncate
// adds past the file's end counts against the quota first, and its open
// keeps a removed file's bytes counted until it is closed.
type quotaFile struct {
	pollable
	q       *dataQuota
	log     GuestLog
	ino     uint64
	appends bool
	closed  atomic.Bool
}

func (f *quotaFile) Close() experimentalsys.Errno {
	if f.closed.CompareAndSwap(false, true) {
		size, _ := f.end()
		defer f.q.closed(f.ino, size)
	}
	return f.File.Close()
}

func (f *quotaFile) end() (int64, experimentalsys.Errno) {
	st, e := f.File.Stat()
	return st.Size, e
}

// reserve takes the growth of writing n bytes at off (the file's end for
// an appending file), returning the file's size before.
func (f *quotaFile) reserve(off, n int64) (int64, experimentalsys.Errno) {
	size, e := f.end()
	if e != 0 {
		return 0, e
	}
	if f.appends {
		off = size
	}
	if !f.q.grow(max(0, off+n-size), f.log) {
		return 0, experimentalsys.EIO
	}
	return size, 0
}

// settle corrects the reservation to what the file grew by.
func (f *quotaFile) settle(before, reservedEnd int64) {
	after, e := f.end()
	if e != 0 {
		return
	}
	f.q.grow((after-before)-max(0, reservedEnd-before), nil)
}

func (f *quotaFile) Write(buf []byte) (int, experimentalsys.Errno) {
	f.q.writeMu.Lock()
	defer f.q.writeMu.Unlock()
	off, e := f.File.Seek(0, io.SeekCurrent)
	if e != 0 {
		return 0, e
	}
	before, e := f.reserve(off, int64(len(buf)))
	if e != 0 {
		return 0, e
	}
	n, e := f.File.Write(buf)
	f.settle(before, reservedEnd(f.appends, before, off, len(buf)))
	return n, e
}

func (f *quotaFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	f.q.writeMu.Lock()
	defer f.q.writeMu.Unlock()
	before, e := f.reserve(off, int64(len(buf)))
	if e != 0 {
		return 0, e
	}
	n, e := f.File.Pwrite(buf, off)
	f.settle(before, reservedEnd(f.appends, before, off, len(buf)))
	return n, e
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
	f.q.writeMu.Lock()
	defer f.q.writeMu.Unlock()
	before, e := f.end()
	if e != 0 {
		return e
	}
	if !f.q.grow(size-before, f.log) {
		return experimentalsys.EIO
	}
	if e := f.File.Truncate(size); e != 0 {
		f.q.grow(before-size, nil)
		return e
	}
	return 0
}

// reservedEnd is where the reservation for a write of n bytes at off
// assumed the file would end.
func reservedEnd(appends bool, size, off int64, n int) int64 {
	if appends {
		off = size
	}
	return max(size, off+int64(n))
}
