package runtime

import (
	"bytes"
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
)

// ErrSymlinkInApp refuses an app folder that contains a symbolic link.
var ErrSymlinkInApp = errors.New("runtime: app folder contains a symbolic link")

// GuestPycacheDir is where compiled app code is mounted, read-only; the
// reactor sets sys.pycache_prefix to it (ABI.md "Guest file system").
const GuestPycacheDir = "/pyc"

// CompileApp checks an app folder (no symbolic links anywhere in it) and
// compiles every .py file of an app folder to .pyc with the
// guest's own interpreter, once per content: the result is cached outside
// the folder, in a directory named by a hash of the folder's Python sources
// and the interpreter, and returned for AppConfig.PycacheDir. Importing Flask
// from compiled files takes a fraction of compiling it at every start.
func (e *Engine) CompileApp(ctx context.Context, appDir string) (string, error) {
	key, err := e.sourceHash(appDir)
	if err != nil {
		return "", err
	}
	out := filepath.Join(e.cacheDir, "..", "pyc", key)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("runtime: pyc cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), key+".tmp-")
	if err != nil {
		return "", fmt.Errorf("runtime: pyc cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	var stderr bytes.Buffer
	start := time.Now()
	code, err := e.RunCommand(ctx, Command{
		Args: []string{"-m", "compileall", "-q", GuestAppDir},
		Env:  []string{"PYTHONPYCACHEPREFIX=" + GuestPycacheDir},
		Mounts: []Mount{
			{Host: appDir, Guest: GuestAppDir},
			{Host: tmp, Guest: GuestPycacheDir, Writable: true},
		},
		Stdout: io.Discard,
		Stderr: &stderr,
	})
	if err != nil {
		return "", err
	}
	if code != 0 {
		// A file that does not compile is the app's problem, reported when it
		// is imported; the rest is still worth caching.
		e.log.Warn("some app files did not compile", "dir", appDir, "output", lastLines(stderr.String(), 5))
	}
	if err := os.Rename(tmp, out); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(out); statErr != nil {
			return "", fmt.Errorf("runtime: pyc cache: %w", err)
		}
	}
	e.log.Info("compiled app to .pyc", "dir", appDir, "seconds", time.Since(start).Seconds(), "cache", out)
	return out, nil
}

// sourceHash names a folder's Python sources and the interpreter that
// compiles them.
func (e *Engine) sourceHash(dir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "interpreter %s\n", e.interp.Dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// The guest would not see it (confinedFS) and it may point out of
			// the folder: refuse the app at load, naming the link.
			return fmt.Errorf("%w: %s", ErrSymlinkInApp, p)
		}
		if d.IsDir() || !strings.HasSuffix(p, ".py") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		// The .pyc records the source's mtime and size, so they are part of
		// the key along with the content.
		fmt.Fprintf(h, "%s %d %d\n", rel, info.Size(), info.ModTime().Unix())
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("runtime: hash app sources: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
