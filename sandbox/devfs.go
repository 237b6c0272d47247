package sandbox

import (
	"io/fs"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// GuestDevDir holds the devices a guest may open: only null (os.devnull),
// which apps and libraries open to discard output.
const GuestDevDir = "/dev"

// devFS is the guest's /dev: a folder with one entry, null, which reads
// as empty and takes every write. Nothing of the host's /dev is reached.
type devFS struct {
	experimentalsys.UnimplementedFS
}

var devStarted = time.Now()

func (devFS) OpenFile(p string, flag experimentalsys.Oflag, _ fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	switch p {
	case ".", "", "/":
		if flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR) != 0 {
			return nil, experimentalsys.EISDIR
		}
		return &devDir{}, 0
	case "null":
		if flag&experimentalsys.O_DIRECTORY != 0 {
			return nil, experimentalsys.ENOTDIR
		}
		return devNull{}, 0
	}
	if flag&experimentalsys.O_CREAT != 0 {
		return nil, experimentalsys.EACCES
	}
	return nil, experimentalsys.ENOENT
}

func (d devFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	f, e := d.OpenFile(p, experimentalsys.O_RDONLY, 0)
	if e != 0 {
		return sys.Stat_t{}, e
	}
	return f.Stat()
}

func (d devFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) { return d.Stat(p) }

// devStat is the stat of /dev (dir) or /dev/null.
func devStat(dir bool) sys.Stat_t {
	st := sys.Stat_t{Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Nlink: 1, Ino: 2}
	if dir {
		st = sys.Stat_t{Mode: fs.ModeDir | 0o555, Nlink: 2, Ino: 1}
	}
	t := devStarted.UnixNano()
	st.Atim, st.Mtim, st.Ctim = t, t, t
	return st
}

// devDir is /dev opened as a folder.
type devDir struct {
	experimentalsys.UnimplementedFile
	listed bool
}

func (*devDir) IsDir() (bool, experimentalsys.Errno)      { return true, 0 }
func (*devDir) Stat() (sys.Stat_t, experimentalsys.Errno) { return devStat(true), 0 }

func (d *devDir) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	if d.listed {
		return nil, 0
	}
	d.listed = true
	return []experimentalsys.Dirent{{Name: "null", Ino: 2, Type: fs.ModeDevice | fs.ModeCharDevice}}, 0
}

// devNull is /dev/null.
type devNull struct {
	experimentalsys.UnimplementedFile
}

func (devNull) IsDir() (bool, experimentalsys.Errno)                  { return false, 0 }
func (devNull) Stat() (sys.Stat_t, experimentalsys.Errno)             { return devStat(false), 0 }
func (devNull) Read([]byte) (int, experimentalsys.Errno)              { return 0, 0 }
func (devNull) Pread([]byte, int64) (int, experimentalsys.Errno)      { return 0, 0 }
func (devNull) Write(p []byte) (int, experimentalsys.Errno)           { return len(p), 0 }
func (devNull) Pwrite(p []byte, _ int64) (int, experimentalsys.Errno) { return len(p), 0 }
func (devNull) Truncate(int64) experimentalsys.Errno                  { return 0 }
func (devNull) Sync() experimentalsys.Errno                           { return 0 }
func (devNull) Datasync() experimentalsys.Errno                       { return 0 }
