// Package tenantfs is how the host reads a tenant's folder: every path is
// resolved one component at a time from a descriptor of the folder
// (openat with O_NOFOLLOW), so no symbolic link is followed anywhere in it
// and ".." never climbs out, whatever the tenant plants there, before or
// after it was loaded. Only regular files are opened, without blocking (a
// FIFO named app.py is refused, not waited on), and reads of whole files
// are bounded in size. The folder's own path is the operator's and is
// opened as given.
package tenantfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Errors of Open, ReadFile and Walk (wrapped with the path).
var (
	// ErrLink: a component of the path is a symbolic link.
	ErrLink = errors.New("tenantfs: symbolic link")
	// ErrNotRegular: the path names a FIFO, socket, device or folder where
	// a file was wanted.
	ErrNotRegular = errors.New("tenantfs: not a regular file")
	// ErrTooLarge: the file is larger than the caller's bound.
	ErrTooLarge = errors.New("tenantfs: file too large")
	// ErrOutside: the path is absolute or climbs out with "..".
	ErrOutside = errors.New("tenantfs: path leaves the folder")
	// ErrTooDeep: Walk met folders nested deeper than MaxDepth.
	ErrTooDeep = errors.New("tenantfs: folders nested too deep")
)

// MaxDepth bounds how deep Walk descends: it holds one descriptor per
// level, so a tree nested without end must not take the process's
// descriptors (Python packages nest a dozen levels at most).
const MaxDepth = 128

// Open opens the regular file at rel (slash-separated, relative) inside
// root. No component may be a symbolic link, and the file is opened
// non-blocking and then checked to be regular.
func Open(root, rel string) (*os.File, error) {
	parts, err := split(rel)
	if err != nil || len(parts) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrOutside, rel)
	}
	dir, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer func() { unix.Close(dir) }() // the last folder opened, not the root
	for _, part := range parts[:len(parts)-1] {
		next, err := openat(dir, part, unix.O_DIRECTORY)
		if err != nil {
			return nil, fmt.Errorf("tenantfs: %s: %w", filepath.Join(root, rel), err)
		}
		unix.Close(dir)
		dir = next
	}
	fd, err := openat(dir, parts[len(parts)-1], unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("tenantfs: %s: %w", filepath.Join(root, rel), err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(root, filepath.FromSlash(rel)))
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%w: %s", ErrNotRegular, f.Name())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the regular file at rel inside root (as Open), refusing
// one of more than limit bytes.
func ReadFile(root, rel string, limit int64) ([]byte, error) {
	f, err := Open(root, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, f.Name(), limit)
	}
	return data, nil
}

// Entry is one item Walk visits.
type Entry struct {
	Rel  string      // slash-separated, relative to the root
	Type fs.FileMode // fs.ModeDir, fs.ModeSymlink, 0 for a regular file, ...
	Info fs.FileInfo // from lstat: the link itself for a link
}

// SkipDir returned by Walk's function for a folder skips its contents.
var SkipDir = fs.SkipDir

// Walk calls fn for every item below root, in lexical order, descending
// through folders by descriptor so that a folder swapped for a link during
// the walk is not entered. Links are reported, never followed; an error from
// fn ends the walk and is returned.
func Walk(root string, fn func(Entry) error) error {
	dir, err := openRoot(root)
	if err != nil {
		return err
	}
	return walk(dir, root, "", 0, fn)
}

// walk reads the folder open at fd (which it closes), named rel below root
// and depth levels down.
func walk(fd int, root, rel string, depth int, fn func(Entry) error) error {
	f := os.NewFile(uintptr(fd), filepath.Join(root, filepath.FromSlash(rel)))
	defer f.Close()
	if depth > MaxDepth {
		return fmt.Errorf("%w: %s is %d levels down", ErrTooDeep, f.Name(), depth)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("tenantfs: %w", err)
	}
	slices.Sort(names)
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the listing
			}
			return fmt.Errorf("tenantfs: %s: %w", filepath.Join(f.Name(), name), err)
		}
		e := Entry{Rel: name, Info: statInfo{name: name, st: st}}
		if rel != "" {
			e.Rel = rel + "/" + name
		}
		e.Type = e.Info.Mode().Type()
		err := fn(e)
		if errors.Is(err, SkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if e.Type != fs.ModeDir {
			continue
		}
		sub, err := openat(fd, name, unix.O_DIRECTORY)
		if errors.Is(err, ErrLink) {
			// Swapped for a link since the stat: report it as the link
			// it now is.
			if err := fn(Entry{Rel: e.Rel, Type: fs.ModeSymlink, Info: e.Info}); err != nil && !errors.Is(err, SkipDir) {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("tenantfs: %s: %w", filepath.Join(f.Name(), name), err)
		}
		if err := walk(sub, root, e.Rel, depth+1, fn); err != nil {
			return err
		}
	}
	return nil
}

// split checks rel and returns its components.
func split(rel string) ([]string, error) {
	rel = filepath.ToSlash(rel)
	if strings.HasPrefix(rel, "/") {
		return nil, ErrOutside
	}
	var parts []string
	for _, p := range strings.Split(rel, "/") {
		switch p {
		case "", ".":
		case "..":
			return nil, ErrOutside
		default:
			parts = append(parts, p)
		}
	}
	return parts, nil
}

func openRoot(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("tenantfs: %s: %w", root, err)
	}
	return fd, nil
}

// openat opens name in the folder at dir without following a link; a link
// is ErrLink.
func openat(dir int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|flags, 0)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ELOOP):
			return -1, ErrLink
		case errors.Is(err, unix.ENOTDIR) && flags&unix.O_DIRECTORY != 0:
			// O_DIRECTORY|O_NOFOLLOW on a link to a folder says ENOTDIR.
			var st unix.Stat_t
			if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return -1, ErrLink
			}
			return -1, err
		default:
			return -1, err
		}
	}
}

// statInfo is an fs.FileInfo from an lstat.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s statInfo) Name() string       { return s.name }
func (s statInfo) Size() int64        { return s.st.Size }
func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s statInfo) Sys() any           { return &s.st }

func (s statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	return m
}
