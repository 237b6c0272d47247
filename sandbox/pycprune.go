package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// PruneResult says what RetainCompiled removed from the .pyc cache.
type PruneResult struct {
	Apps   int   // app folders removed
	Shared int   // shared site-packages entries removed
	Bytes  int64 // bytes of the files whose last link went
}

// RetainCompiled keeps the compiled code of the apps in use (the folders
// CompileApp returned, keep) and removes from the .pyc cache what no app
// uses any more, so that a host whose tenants deploy new code every day
// does not fill its disk with the old versions' .pyc.
//
// Other processes (another serve, wsgi-wasm exec, check) may be using
// folders this one does not know of, so only what has been idle longer than
// grace goes: CompileApp and this function touch the folders they use, and
// an app folder goes when it is not kept and was last touched before
// grace; a shared entry when no app folder links any of its files any more
// (each file's link count is 1) and it too was last touched before grace.
// Leftovers of interrupted compiles go after an hour. A caller that keeps
// folders in use for longer than grace calls this again within grace to
// touch them.
func (e *Engine) RetainCompiled(keep []string, grace time.Duration) (PruneResult, error) {
	root := e.pycacheRoot()
	now := time.Now()
	kept := make(map[string]bool, len(keep))
	for _, dir := range keep {
		kept[filepath.Base(dir)] = true
		if filepath.Dir(dir) == root {
			// A folder another process just removed is compiled again by
			// CompileApp when it is next needed.
			_ = touch(dir)
		}
	}
	var res PruneResult
	var errs []error
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if !ent.IsDir() || name == sharedPycDir || kept[name] || !idleSince(filepath.Join(root, name), now, pruneWait(name, grace)) {
			continue
		}
		freed, err := removeTree(filepath.Join(root, name))
		res.Bytes += freed
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !strings.Contains(name, ".tmp-") {
			res.Apps++
		}
	}
	shared := filepath.Join(root, sharedPycDir)
	entries, err = os.ReadDir(shared)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("sandbox: pyc cache: %w", err))
	}
	for _, ent := range entries {
		p := filepath.Join(shared, ent.Name())
		if !ent.IsDir() || !idleSince(p, now, pruneWait(ent.Name(), grace)) || linked(p) {
			continue
		}
		freed, err := removeTree(p)
		res.Bytes += freed
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !strings.Contains(ent.Name(), ".tmp-") {
			res.Shared++
		}
	}
	return res, errors.Join(errs...)
}

// pruneWait is how long a cache folder must have been idle to be removed:
// grace, or an hour for the leftover of an interrupted compile (a younger
// one may be in progress).
func pruneWait(name string, grace time.Duration) time.Duration {
	if strings.Contains(name, ".tmp-") {
		return time.Hour
	}
	return grace
}

// idleSince reports whether the folder p was last touched over wait ago.
func idleSince(p string, now time.Time, wait time.Duration) bool {
	st, err := os.Stat(p)
	return err == nil && now.Sub(st.ModTime()) > wait
}

// linked reports whether any file below the shared entry p has another
// link (an app folder's), or cannot be checked.
func linked(p string) bool {
	found := false
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Nlink > 1 {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found || err != nil
}

// removeTree removes the folder p and returns the bytes of the files it
// held whose last link it removed.
func removeTree(p string) (int64, error) {
	var freed int64
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink == 1 {
				freed += info.Size()
			}
		}
		return nil
	})
	if err := os.RemoveAll(p); err != nil {
		return freed, fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	return freed, nil
}
