package runtime

import (
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

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
		q := &dataQuota{dir: dir}
		var used, entries int64
		tenantfs.Walk(dir, func(en tenantfs.Entry) error {
			entries++
			if en.Type.IsRegular() {
				used += en.Info.Size()
			}
			return nil
		})
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
func (q *dataQuota) grow(n int64, log func(level int32, msg []byte)) bool {
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
func (q *dataQuota) create(log func(level int32, msg []byte)) bool {
	if q.entries.Add(1) > MaxDataFiles {
		q.entries.Add(-1)
		q.refuse(log)
		return false
	}
	return true
}

func (q *dataQuota) refuse(log func(level int32, msg []byte)) {
	q.refused.Add(1)
	q.warnedMu.Lock()
	defer q.warnedMu.Unlock()
	if log != nil && time.Since(q.warned) > time.Minute {
		q.warned = time.Now()
		log(1, []byte("wsgi-wasm: the data folder is full (its policy's data_max_mb or 100000 files); writes fail with OSError until files are removed"))
	}
}

// quotaFS is the data folder's file system with its quota applied.
type quotaFS struct {
	experimentalsys.FS
	q   *dataQuota
	log func(level int32, msg []byte)
}

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
	if existed && flag&experimentalsys.O_TRUNC != 0 {
		f.q.grow(-before, nil)
	}
	if flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR) == 0 {
		return file, 0
	}
	return &quotaFile{File: file, q: f.q, log: f.log, appends: flag&experimentalsys.O_APPEND != 0}, 0
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
	size, existed := f.size(p)
	e := f.FS.Unlink(p)
	if e == 0 && existed {
		f.q.grow(-size, nil)
		f.q.entries.Add(-1)
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

// Rename over an existing file frees the file replaced.
func (f *quotaFS) Rename(from, to string) experimentalsys.Errno {
	size, existed := f.size(to)
	e := f.FS.Rename(from, to)
	if e == 0 && existed {
		f.q.grow(-size, nil)
		f.q.entries.Add(-1)
	}
	return e
}

// quotaFile is a file of the data folder open for writing: what a write
// or truncate adds past the file's end counts against the quota first.
type quotaFile struct {
	experimentalsys.File
	q       *dataQuota
	log     func(level int32, msg []byte)
	appends bool
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
	before, e := f.reserve(off, int64(len(buf)))
	if e != 0 {
		return 0, e
	}
	n, e := f.File.Pwrite(buf, off)
	f.settle(before, reservedEnd(f.appends, before, off, len(buf)))
	return n, e
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
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

// Poll, IsNonblock and SetNonblock pass through (see budgetedFile).
func (f *quotaFile) Poll(flag experimentalsys.Pflag, timeoutMillis int32) (bool, experimentalsys.Errno) {
	if pf, ok := f.File.(experimentalsys.PollableFile); ok {
		return pf.Poll(flag, timeoutMillis)
	}
	return false, experimentalsys.ENOSYS
}

func (f *quotaFile) IsNonblock() bool {
	pf, ok := f.File.(experimentalsys.PollableFile)
	return ok && pf.IsNonblock()
}

func (f *quotaFile) SetNonblock(enable bool) experimentalsys.Errno {
	if pf, ok := f.File.(experimentalsys.PollableFile); ok {
		return pf.SetNonblock(enable)
	}
	return experimentalsys.ENOSYS
}
