package runtime

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// confinedFS serves a host folder to the guest without ever resolving a path
// outside it. wazero's own directory mount follows host symlinks, so a guest
// with a writable mount could create a link to /etc and read through it.
// Here the guest can create neither symlinks nor hard links, and every path
// is refused (ENOENT, as if absent) when any of its components on the host
// is a symlink, so links placed by someone else are not followed either.
type confinedFS struct {
	root string
	fs   experimentalsys.FS
}

// newConfinedFS mounts root, read-only unless writable.
func newConfinedFS(root string, writable bool) experimentalsys.FS {
	var inner experimentalsys.FS = sysfs.DirFS(root)
	if !writable {
		inner = &sysfs.ReadFS{FS: inner}
	}
	return &confinedFS{root: root, fs: inner}
}

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

func (c *confinedFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if e := c.check(p); e != 0 {
		return nil, e
	}
	return c.fs.OpenFile(p, flag|experimentalsys.O_NOFOLLOW, perm)
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
