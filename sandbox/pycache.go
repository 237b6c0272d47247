package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// ErrSymlinkInApp refuses an app folder that contains a symbolic link.
var ErrSymlinkInApp = errors.New("sandbox: app folder contains a symbolic link")

// GuestPycacheDir is where compiled app code is mounted, read-only; the
// reactor sets sys.pycache_prefix to it (ABI.md "Guest file system").
const GuestPycacheDir = "/pyc"

// ErrSpecialFileInApp refuses an app folder that contains a FIFO, socket
// or device: reading one could block the host.
var ErrSpecialFileInApp = errors.New("sandbox: app folder contains a special file")

// CompileApp checks an app folder (no symbolic links or special files
// anywhere in it) and compiles its .py files to .pyc with the guest's own
// interpreter, once per content: the result is cached outside the folder,
// in a directory named by a hash of the folder's Python sources and the
// interpreter, and returned for AppConfig.PycacheDir. Importing Flask from
// compiled files takes a fraction of compiling it at every start.
//
// The sources are read once, through tenantfs (no link followed, nothing
// but regular files opened): hashed and copied aside, and the copy is what
// is compiled, so a cache entry holds exactly what its name hashes, even if
// the folder changes meanwhile; tenants with the same sources can then
// share it safely. The compiler runs under memoryLimit (0:
// DefaultMemoryLimit) and stops when ctx is done.
func (e *Engine) CompileApp(ctx context.Context, appDir string, memoryLimit uint64) (string, error) {
	root := filepath.Join(e.cacheDir, "..", "pyc")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	key, err := e.sourceHash(appDir, "")
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, key)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if v, ok := e.compileFailures.Load(key); ok {
		// Sources that did not compile within their deadline are not tried
		// again for a while (a reload's load after its precompile must not
		// wait twice); an edit changes the key.
		if f := v.(compileFailure); time.Since(f.at) < compileFailureMemory {
			return "", f.err
		}
		e.compileFailures.Delete(key)
	}
	out, err = e.compileInto(ctx, root, key, appDir, memoryLimit)
	if err != nil && ctx.Err() != nil {
		e.compileFailures.Store(key, compileFailure{err: err, at: time.Now()})
	}
	return out, err
}

// compileFailureMemory is how long a compile that passed its deadline is
// remembered.
const compileFailureMemory = 10 * time.Minute

type compileFailure struct {
	err error
	at  time.Time
}

// compileInto copies appDir's sources aside, compiles the copy and stores
// the result in root under the copy's hash.
func (e *Engine) compileInto(ctx context.Context, root, key, appDir string, memoryLimit uint64) (string, error) {
	tmp, err := os.MkdirTemp(root, key+".tmp-")
	if err != nil {
		return "", fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	src, pyc := filepath.Join(tmp, "src"), filepath.Join(tmp, "pyc")
	if err := os.Mkdir(pyc, 0o755); err != nil {
		return "", fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	// What is compiled is the copy, named by its own hash.
	if key, err = e.sourceHash(appDir, src); err != nil {
		return "", err
	}
	out := filepath.Join(root, key)
	if memoryLimit == 0 {
		memoryLimit = DefaultMemoryLimit
	}
	var stderr limitedBuffer
	start := time.Now()
	code, err := e.RunCommand(ctx, Command{
		Args: []string{"-m", "compileall", "-q", GuestAppDir},
		Env:  []string{"PYTHONPYCACHEPREFIX=" + GuestPycacheDir},
		Mounts: []Mount{
			{Host: src, Guest: GuestAppDir},
			{Host: pyc, Guest: GuestPycacheDir, Writable: true},
		},
		Stdout:      io.Discard,
		Stderr:      &stderr,
		MemoryLimit: memoryLimit,
	})
	if err != nil {
		return "", fmt.Errorf("sandbox: compiling the app to .pyc: %w", err)
	}
	if code != 0 {
		// A file that does not compile is the app's problem, reported when it
		// is imported; the rest is still worth caching.
		e.log.Warn("some app files did not compile", "dir", appDir, "output", lastLines(stderr.String(), 5))
	}
	if err := os.Rename(pyc, out); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(out); statErr != nil {
			return "", fmt.Errorf("sandbox: pyc cache: %w", err)
		}
	}
	e.log.Info("compiled app to .pyc", "dir", appDir, "seconds", time.Since(start).Seconds(), "cache", out)
	return out, nil
}

// sourceHash names a folder's Python sources and the interpreter that
// compiles them. With copyTo set, every .py file is
// copied there as it is hashed (same relative path, size and mtime), so
// the hash names the copy.
func (e *Engine) sourceHash(dir, copyTo string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "interpreter %s\n", e.interp.Dir)
	err := tenantfs.Walk(dir, func(ent tenantfs.Entry) error {
		switch {
		case ent.Type&fs.ModeSymlink != 0:
			// The guest would not see it (confinedFS) and it may point out of
			// the folder: refuse the app at load, naming the link.
			return fmt.Errorf("%w: %s", ErrSymlinkInApp, filepath.Join(dir, ent.Rel))
		case ent.Type.IsDir():
			return nil
		case !ent.Type.IsRegular():
			return fmt.Errorf("%w: %s (%v)", ErrSpecialFileInApp, filepath.Join(dir, ent.Rel), ent.Type)
		case !strings.HasSuffix(ent.Rel, ".py"):
			return nil
		}
		f, err := tenantfs.Open(dir, ent.Rel)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		// The .pyc records the source's mtime and size, so they are part of
		// the key along with the content.
		fmt.Fprintf(h, "%s %d %d\n", ent.Rel, st.Size(), st.ModTime().Unix())
		if copyTo == "" {
			_, err = io.Copy(h, f)
			return err
		}
		return copyHashed(h, f, st, filepath.Join(copyTo, filepath.FromSlash(ent.Rel)))
	})
	if err != nil {
		return "", fmt.Errorf("sandbox: hash app sources: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// copyHashed copies f (whose stat is st) to dst, writing it into h too,
// and gives dst f's modification time.
func copyHashed(h io.Writer, f *os.File, st fs.FileInfo, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.MultiWriter(out, h), f)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed while it was read", f.Name())
	}
	if err != nil {
		return err
	}
	return os.Chtimes(dst, st.ModTime(), st.ModTime())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
