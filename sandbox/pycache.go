package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
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
// interpreter, once per content, into a folder outside the app folder that
// it returns for AppConfig.PycacheDir. Importing Flask from compiled files
// takes a fraction of compiling it at every start.
//
// Each entry of the app's site-packages (a package folder or a module) is
// compiled on its own, once per content: its .pyc are kept under a hash of
// its files' paths and contents (not their times: they are hash-based .pyc,
// checked against the source at import) and hard-linked into the folder of
// every app that has the same files, so a hundred tenants with the same
// vendored Flask compile and store it once. The app's own code is compiled
// per app. An app's folder is named by the hash of its own sources and of
// its packages' hashes (see sandbox/README.md, "Compiled code").
//
// The sources are read once, through tenantfs (no link followed, nothing
// but regular files opened): hashed and copied aside, and the copy is what
// is compiled, so a cache entry holds exactly what its name hashes, even if
// the folder changes meanwhile; tenants with the same sources can then
// share it safely. Packages are compiled in a run without the app's own
// code, and nothing of an app is imported by the compiler, so no app can
// put into a shared entry anything but its packages' compiled sources.
// Entries are written by the host only and mounted read-only. The compiler
// runs under memoryLimit (0: DefaultMemoryLimit) and stops when ctx is done.
func (e *Engine) CompileApp(ctx context.Context, appDir string, memoryLimit uint64) (string, error) {
	root := e.pycacheRoot()
	if err := os.MkdirAll(filepath.Join(root, sharedPycDir), 0o755); err != nil {
		return "", fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	srcs, err := e.hashSources(appDir, "")
	if err != nil {
		return "", err
	}
	key := srcs.key()
	out := filepath.Join(root, key)
	if _, err := os.Stat(out); err == nil {
		touch(out) // in use: RetainCompiled leaves it
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
	if errors.Is(err, errSharedGone) {
		// Another process pruned it meanwhile: this time it is compiled.
		out, err = e.compileInto(ctx, root, key, appDir, memoryLimit)
	}
	if err != nil && ctx.Err() != nil {
		e.compileFailures.Store(key, compileFailure{err: err, at: time.Now()})
	}
	return out, err
}

// pycacheRoot is the folder of compiled code: app folders by key, and
// sharedPycDir.
func (e *Engine) pycacheRoot() string { return filepath.Join(e.cacheDir, "..", "pyc") }

// sharedPycDir, below the pyc cache, holds the compiled site-packages
// entries that app folders link to, each in a folder named by its key and
// laid out as below /pyc/app/site-packages.
const sharedPycDir = "shared"

// sitePackagesDir is the app's folder of packages (on sys.path as
// /app/site-packages), whose entries are compiled and shared by content.
const sitePackagesDir = "site-packages"

// compileFailureMemory is how long a compile that passed its deadline is
// remembered.
const compileFailureMemory = 10 * time.Minute

type compileFailure struct {
	err error
	at  time.Time
}

// compileInto copies appDir's sources aside, compiles what is not cached
// yet (site-packages entries apart from the app's own code) and stores the
// app's folder in root under the copy's hash.
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
	srcs, err := e.hashSources(appDir, src)
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, srcs.key())
	if memoryLimit == 0 {
		memoryLimit = DefaultMemoryLimit
	}
	start := time.Now()
	shared := filepath.Join(root, sharedPycDir)
	// The packages not compiled yet, in a run of their own.
	pkgSrc := filepath.Join(tmp, "pkg-src")
	var missing []string
	for _, name := range srcs.packageNames() {
		if p := filepath.Join(shared, srcs.packages[name].key); touch(p) == nil {
			continue
		}
		missing = append(missing, name)
		if err := os.MkdirAll(filepath.Join(pkgSrc, sitePackagesDir), 0o755); err != nil {
			return "", fmt.Errorf("sandbox: pyc cache: %w", err)
		}
		if err := os.Rename(filepath.Join(src, sitePackagesDir, name), filepath.Join(pkgSrc, sitePackagesDir, name)); err != nil {
			return "", fmt.Errorf("sandbox: pyc cache: %w", err)
		}
	}
	if len(missing) > 0 {
		pkgPyc := filepath.Join(tmp, "pkg-pyc")
		if err := e.compileTree(ctx, appDir, pkgSrc, pkgPyc, "checked-hash", memoryLimit); err != nil {
			return "", err
		}
		for _, name := range missing {
			if err := storeShared(shared, srcs.packages[name].key, filepath.Join(pkgPyc, "app", sitePackagesDir), name); err != nil {
				return "", err
			}
		}
	}
	// The app's own code, without its packages.
	if err := os.RemoveAll(filepath.Join(src, sitePackagesDir)); err != nil {
		return "", fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	if srcs.ownFiles > 0 {
		if err := e.compileTree(ctx, appDir, src, pyc, "timestamp", memoryLimit); err != nil {
			return "", err
		}
	}
	for _, name := range srcs.packageNames() {
		to := filepath.Join(pyc, "app", sitePackagesDir)
		if err := linkTree(filepath.Join(shared, srcs.packages[name].key), to); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = errSharedGone
			}
			return "", fmt.Errorf("sandbox: pyc cache: linking %s's compiled %s: %w", appDir, name, err)
		}
	}
	if err := os.Rename(pyc, out); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(out); statErr != nil {
			return "", fmt.Errorf("sandbox: pyc cache: %w", err)
		}
	}
	e.log.Info("compiled app to .pyc", "dir", appDir, "seconds", time.Since(start).Seconds(),
		"cache", out, "packages", len(srcs.packages), "packages_compiled", len(missing))
	return out, nil
}

// compileTree compiles the sources in src (mounted at /app) into pyc
// (mounted at /pyc) with compileall and the .pyc invalidation mode given.
// -P keeps the current folder off sys.path: the compiler imports nothing
// of the app's.
func (e *Engine) compileTree(ctx context.Context, appDir, src, pyc, mode string, memoryLimit uint64) error {
	if err := os.MkdirAll(pyc, 0o755); err != nil {
		return fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	var stderr limitedBuffer
	code, err := e.RunCommand(ctx, Command{
		Args: []string{"-P", "-m", "compileall", "-q", "--invalidation-mode", mode, GuestAppDir},
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
		return fmt.Errorf("sandbox: compiling the app to .pyc: %w", err)
	}
	if code != 0 {
		// A file that does not compile is the app's problem, reported when it
		// is imported; the rest is still worth caching.
		e.log.Warn("some app files did not compile", "dir", appDir, "output", lastLines(stderr.String(), 5))
	}
	return nil
}

// storeShared moves the compiled files of the site-packages entry name
// (a folder, or module "x.py" whose .pyc are "x.*.pyc") from pycDir (the
// compiled /app/site-packages) into shared/key, unless another compile
// stored it first.
func storeShared(shared, key, pycDir, name string) error {
	dst := filepath.Join(shared, key)
	tmp, err := os.MkdirTemp(shared, key+".tmp-")
	if err != nil {
		return fmt.Errorf("sandbox: pyc cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	var compiled []string
	if st, err := os.Stat(filepath.Join(pycDir, name)); err == nil && st.IsDir() {
		compiled = []string{filepath.Join(pycDir, name)}
	} else if stem, ok := strings.CutSuffix(name, ".py"); ok {
		entries, _ := os.ReadDir(pycDir)
		for _, ent := range entries {
			if rest, ok := strings.CutPrefix(ent.Name(), stem+"."); ok && compiledModule.MatchString(rest) && ent.Type().IsRegular() {
				compiled = append(compiled, filepath.Join(pycDir, ent.Name()))
			}
		}
	}
	for _, p := range compiled {
		if err := os.Rename(p, filepath.Join(tmp, filepath.Base(p))); err != nil {
			return fmt.Errorf("sandbox: pyc cache: %w", err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, statErr := os.Stat(dst); statErr != nil {
			return fmt.Errorf("sandbox: pyc cache: %w", err)
		}
	}
	return nil
}

// errSharedGone: a shared entry found in the cache was removed (pruned by
// another process, RetainCompiled) before the app's folder linked it all.
// The app's folder is only put in place once every link is made, so
// nothing partial is left; CompileApp tries once more.
var errSharedGone = errors.New("the shared entry was removed while it was linked")

// touch sets the modification time of p to now: the cache's mark of use
// (RetainCompiled).
func touch(p string) error {
	now := time.Now()
	return os.Chtimes(p, now, now)
}

// compiledModule is what follows "name." in the name of a module's .pyc:
// the cache tag (sys.implementation.cache_tag) and an optimisation level.
var compiledModule = regexp.MustCompile(`^cpython-[0-9]+(\.opt-[0-9]+)?\.pyc$`)

// linkTree hard-links every file below from into the same place below to,
// making folders as needed (copying a file where a link is refused, as
// across file systems).
func linkTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", p)
		}
		if err := os.Link(p, dst); err == nil {
			return nil
		}
		return copyFile(p, dst)
	})
}

// copyFile copies the regular file src to dst, which must not exist.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// appSources are the hashes that name an app's compiled code: its own
// sources, and each entry of its site-packages that holds Python.
type appSources struct {
	interp   string
	own      hash.Hash
	ownFiles int
	packages map[string]*packageSources
}

// packageSources is one site-packages entry's sources.
type packageSources struct {
	h   hash.Hash
	key string // set by finish
}

// packageNames returns the site-packages entries in order.
func (s *appSources) packageNames() []string {
	names := make([]string, 0, len(s.packages))
	for n := range s.packages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// key names the app's folder: its own sources and its packages' keys.
func (s *appSources) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "app of interpreter %s\nown %x\n", s.interp, s.own.Sum(nil))
	for _, n := range s.packageNames() {
		fmt.Fprintf(h, "package %q %s\n", n, s.packages[n].key)
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// hashSources hashes a folder's Python sources, split into its own and
// each site-packages entry's. With copyTo set, every .py file is
// copied there as it is hashed (same relative path, size and mtime), so
// the hashes name the copy.
func (e *Engine) hashSources(dir, copyTo string) (*appSources, error) {
	s := &appSources{interp: e.interp.Dir, own: sha256.New(), packages: map[string]*packageSources{}}
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
		var h hash.Hash
		if rest, ok := strings.CutPrefix(ent.Rel, sitePackagesDir+"/"); ok {
			// A package's .pyc are hash-based: its path, size and content name
			// it, not its time.
			name, _, _ := strings.Cut(rest, "/")
			p := s.packages[name]
			if p == nil {
				p = &packageSources{h: sha256.New()}
				fmt.Fprintf(p.h, "package of interpreter %s\n", e.interp.Dir)
				s.packages[name] = p
			}
			h = p.h
			fmt.Fprintf(h, "%q %d\n", rest, st.Size())
		} else {
			// The app's own .pyc record the source's mtime and size, so they
			// are part of the key along with the content.
			h = s.own
			s.ownFiles++
			fmt.Fprintf(h, "%q %d %d\n", ent.Rel, st.Size(), st.ModTime().Unix())
		}
		if copyTo == "" {
			_, err = io.Copy(h, f)
			return err
		}
		return copyHashed(h, f, st, filepath.Join(copyTo, filepath.FromSlash(ent.Rel)))
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: hash app sources: %w", err)
	}
	for _, p := range s.packages {
		p.key = hex.EncodeToString(p.h.Sum(nil))[:32]
	}
	return s, nil
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
