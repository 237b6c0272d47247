package deps

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

//go:embed pipboot.py
var pipBoot []byte

// SitePackages is the folder of a tenant that Install fills.
const SitePackages = "site-packages"

// Options says what Install installs, from where, and how it runs pip.
type Options struct {
	// Tenant is the tenant folder: its requirements file is read, its
	// site-packages/ replaced.
	Tenant string
	// Requirements is a requirements file to use instead of the tenant's
	// own (empty: the tenant's requirements.txt or pyproject.toml).
	Requirements string
	// FindLinks are the folders of wheels pip may install from.
	FindLinks []string
	// PipWheel is pip's own wheel file (see PipWheel).
	PipWheel string
	// Run runs the sandboxed interpreter (sandbox.Engine.RunCommand).
	Run func(context.Context, sandbox.Command) (int, error)
	// Output receives pip's output as it runs (nil: kept for errors only).
	Output io.Writer
}

// Result says what Install did.
type Result struct {
	// Distributions installed, as name-version.
	Distributions []string
	// Notes: what was dropped (compiled modules of packages that have a
	// pure-Python fallback).
	Notes []string
}

// Install fills the tenant's site-packages/ with its requirements and their
// dependencies, from the find-links folders only, by running pip in the
// sandbox into a new folder in the tenant folder that replaces the old
// site-packages/ only once everything worked: a failed install leaves the
// previous one as it was.
func Install(ctx context.Context, o Options) (Result, error) {
	var res Result
	var spec Spec
	var err error
	if o.Requirements != "" {
		spec, err = ReadRequirements(o.Requirements)
	} else {
		spec, err = Requirements(o.Tenant)
	}
	if err != nil {
		return res, err
	}
	for _, d := range o.FindLinks {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return res, fmt.Errorf("deps: --find-links %s: not a folder", d)
		}
	}
	scratch, err := os.MkdirTemp("", "wsgi-wasm-pip-")
	if err != nil {
		return res, fmt.Errorf("deps: %w", err)
	}
	defer os.RemoveAll(scratch)
	staging, err := os.MkdirTemp(o.Tenant, ".site-packages.new-")
	if err != nil {
		return res, fmt.Errorf("deps: %w", err)
	}
	defer os.RemoveAll(staging) // renamed away on success
	reqText := strings.Join(spec.Lines, "\n") + "\n"
	if len(spec.Constraints) > 0 {
		// Each -r and -c file was read on the host (the guest sees none of
		// them); pip gets one of each.
		reqText += "-c /tmp/constraints.txt\n"
		if err := os.WriteFile(filepath.Join(scratch, "constraints.txt"), []byte(strings.Join(spec.Constraints, "\n")+"\n"), 0o644); err != nil {
			return res, fmt.Errorf("deps: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(scratch, "requirements.txt"), []byte(reqText), 0o644); err != nil {
		return res, fmt.Errorf("deps: %w", err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "pipboot.py"), pipBoot, 0o644); err != nil {
		return res, fmt.Errorf("deps: %w", err)
	}
	pipDir, pipFile := filepath.Split(o.PipWheel)
	mounts := []sandbox.Mount{
		{Host: scratch, Guest: "/tmp", Writable: true},
		{Host: filepath.Clean(pipDir), Guest: "/pip"},
		// pip makes the target folder itself (mkdir on a mount point
		// fails in WASI), so it is one below the mount.
		{Host: staging, Guest: "/stage", Writable: true},
	}
	args := []string{"/tmp/pipboot.py", "/pip/" + pipFile, "install",
		"--no-index", "--only-binary=:all:", "--target", "/stage/site-packages", "--no-compile",
		"--no-cache-dir", "--disable-pip-version-check", "--progress-bar", "off",
		"--no-warn-script-location", "--root-user-action", "ignore"}
	for i, d := range o.FindLinks {
		abs, err := filepath.Abs(d)
		if err != nil {
			return res, fmt.Errorf("deps: %w", err)
		}
		g := fmt.Sprintf("/links%d", i)
		mounts = append(mounts, sandbox.Mount{Host: abs, Guest: g})
		args = append(args, "--find-links", g)
	}
	args = append(args, "-r", "/tmp/requirements.txt")
	var out bytes.Buffer
	w := io.Writer(&out)
	if o.Output != nil {
		w = io.MultiWriter(&out, o.Output)
	}
	code, err := o.Run(ctx, sandbox.Command{
		Args:        args,
		Env:         []string{"TMPDIR=/tmp", "HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1"},
		Mounts:      mounts,
		Stdout:      w,
		Stderr:      w,
		MemoryLimit: 1 << 30,
	})
	if err != nil {
		return res, fmt.Errorf("deps: running pip in the sandbox: %w", err)
	}
	if code != 0 {
		return res, explain(out.String(), spec.From, o.FindLinks)
	}
	site := filepath.Join(staging, SitePackages)
	if res.Notes, err = dropCompiled(site); err != nil {
		return res, err
	}
	if res.Distributions, err = distributions(site); err != nil {
		return res, err
	}
	return res, replace(site, filepath.Join(o.Tenant, SitePackages))
}

// pipMissing matches pip's report of a requirement nothing satisfies.
var pipMissing = regexp.MustCompile(`(?m)^ERROR: (?:No matching distribution found for|Could not find a version that satisfies the requirement) ([A-Za-z0-9][A-Za-z0-9._-]*)`)

// explain turns pip's failure into an error naming the requirement and
// what the find-links folders hold of it: only compiled wheels, only
// sdists, or nothing.
func explain(out, from string, links []string) error {
	m := pipMissing.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("deps: pip failed installing %s:\n%s", from, tail(out, 30))
	}
	name := Normalize(m[1])
	wheels, sdists, err := Links(links)
	if err != nil {
		return fmt.Errorf("deps: %w", err)
	}
	var compiled []string
	for _, w := range wheels[name] {
		if !w.Pure() {
			compiled = append(compiled, filepath.Base(w.Path))
		}
	}
	where := strings.Join(links, ", ")
	if where == "" {
		where = "(none given: --find-links DIR)"
	}
	switch {
	case len(compiled) > 0 && len(compiled) == len(wheels[name]):
		return fmt.Errorf("deps: %s ships only compiled wheels (%s): the sandbox loads no native code; give a pure-Python wheel (tagged py3-none-any) of it in %s, or drop it from %s",
			m[1], strings.Join(compiled, ", "), where, from)
	case len(wheels[name]) == 0 && len(sdists[name]) > 0:
		var names []string
		for _, s := range sdists[name] {
			names = append(names, filepath.Base(s))
		}
		return fmt.Errorf("deps: %s has only source distributions (%s): the sandbox cannot build them (no subprocesses); build a wheel of it (`pip wheel --no-deps SDIST`) and put it in %s",
			m[1], strings.Join(names, ", "), where)
	case len(wheels[name]) == 0:
		return fmt.Errorf("deps: %s (required by %s or by what it requires) is in none of the folders searched: %s", m[1], from, where)
	}
	return fmt.Errorf("deps: no wheel of %s in %s satisfies the requirement (pip's words follow):\n%s", m[1], where, tail(out, 15))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// compiledExt are the file name endings of native modules.
var compiledExt = []string{".so", ".pyd", ".dylib"}

func isCompiled(name string) bool {
	for _, e := range compiledExt {
		if strings.HasSuffix(name, e) {
			return true
		}
	}
	return false
}

// dropCompiled removes the native modules of the installed distributions:
// a distribution with Python modules besides them is kept, with a note; one
// whose modules are all native is an error naming it. Symbolic links are
// errors too (pip makes none; the sandbox refuses them).
func dropCompiled(site string) ([]string, error) {
	owners, err := recordOwners(site)
	if err != nil {
		return nil, err
	}
	type dist struct{ compiled, python []string }
	byDist := map[string]*dist{}
	get := func(d string) *dist {
		if byDist[d] == nil {
			byDist[d] = &dist{}
		}
		return byDist[d]
	}
	err = filepath.WalkDir(site, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(site, p)
		rel = filepath.ToSlash(rel)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("deps: %s: a symbolic link in what pip installed", rel)
		case e.IsDir() && e.Name() == "__pycache__":
			return os.RemoveAll(p)
		case e.IsDir():
			return nil
		case isCompiled(rel):
			get(owners[rel]).compiled = append(get(owners[rel]).compiled, rel)
		case strings.HasSuffix(rel, ".py"):
			get(owners[rel]).python = append(get(owners[rel]).python, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("deps: %w", err)
	}
	var notes, onlyCompiled []string
	names := make([]string, 0, len(byDist))
	for d := range byDist {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		x := byDist[d]
		if len(x.compiled) == 0 {
			continue
		}
		label := d
		if label == "" {
			label = "files of no distribution"
		}
		if len(x.python) == 0 && d != "" {
			onlyCompiled = append(onlyCompiled, fmt.Sprintf("%s (%s)", d, strings.Join(x.compiled, ", ")))
			continue
		}
		for _, f := range x.compiled {
			if err := os.Remove(filepath.Join(site, filepath.FromSlash(f))); err != nil {
				return nil, fmt.Errorf("deps: %w", err)
			}
		}
		notes = append(notes, fmt.Sprintf("%s: dropped its compiled modules (%s); the sandbox loads no native code, its pure-Python fallback is used",
			label, strings.Join(x.compiled, ", ")))
	}
	if len(onlyCompiled) > 0 {
		return nil, fmt.Errorf("deps: ships only compiled modules, which the sandbox cannot load (it runs no native code): %s", strings.Join(onlyCompiled, "; "))
	}
	return notes, nil
}

// recordOwners maps each file listed in a RECORD of site to its
// distribution (the dist-info folder's name without .dist-info).
func recordOwners(site string) (map[string]string, error) {
	infos, err := filepath.Glob(filepath.Join(site, "*.dist-info"))
	if err != nil {
		return nil, err
	}
	owners := map[string]string{}
	for _, info := range infos {
		f, err := os.Open(filepath.Join(info, "RECORD"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("deps: %w", err)
		}
		d := strings.TrimSuffix(filepath.Base(info), ".dist-info")
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			path, _, _ := strings.Cut(sc.Text(), ",")
			owners[strings.Trim(path, `"`)] = d
		}
		f.Close()
	}
	return owners, nil
}

// distributions lists name-version of the dist-info folders in site.
func distributions(site string) ([]string, error) {
	infos, err := filepath.Glob(filepath.Join(site, "*.dist-info"))
	if err != nil {
		return nil, err
	}
	var ds []string
	for _, info := range infos {
		ds = append(ds, strings.TrimSuffix(filepath.Base(info), ".dist-info"))
	}
	return ds, nil
}

// replace puts staging in the place of site: the old folder is moved aside,
// staging renamed in, then the old one removed; if the rename fails the old
// folder is put back.
func replace(staging, site string) error {
	old := ""
	if _, err := os.Lstat(site); err == nil {
		old = staging + ".old"
		if err := os.Rename(site, old); err != nil {
			return fmt.Errorf("deps: %w", err)
		}
	}
	if err := os.Rename(staging, site); err != nil {
		if old != "" {
			os.Rename(old, site)
		}
		return fmt.Errorf("deps: %w", err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// PipWheel returns pip's wheel from Debian's python3-pip-whl package,
// fetched with `apt-get download` and unpacked with `dpkg -x` into
// cache/pip-whl the first time (nothing is installed system-wide).
func PipWheel(cache string) (string, error) {
	root := filepath.Join(cache, "pip-whl")
	glob := filepath.Join(root, "usr", "share", "python-wheels", "pip-*.whl")
	if m, _ := filepath.Glob(glob); len(m) > 0 {
		return m[len(m)-1], nil
	}
	dl := filepath.Join(cache, "pip-whl.download")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", fmt.Errorf("deps: %w", err)
	}
	defer os.RemoveAll(dl)
	cmd := exec.Command("apt-get", "download", "python3-pip-whl")
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("deps: pip's wheel: apt-get download python3-pip-whl (or give --pip-wheel FILE): %v\n%s", err, tail(string(out), 5))
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "python3-pip-whl_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("deps: pip's wheel: apt-get download python3-pip-whl left no .deb")
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if out, err := exec.Command("dpkg", "-x", debs[0], tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("deps: pip's wheel: dpkg -x: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("deps: %w", err)
	}
	m, _ := filepath.Glob(glob)
	if len(m) == 0 {
		return "", fmt.Errorf("deps: pip's wheel: none in python3-pip-whl (%s)", glob)
	}
	return m[len(m)-1], nil
}
