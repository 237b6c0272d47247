package tenants

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

// Problem is one finding of Check.
type Problem struct {
	Error bool   // false: a warning
	Path  string // file the problem is in
	Line  int    // 0 when not about a line
	What  string
}

func (p Problem) String() string {
	kind := "warning"
	if p.Error {
		kind = "error"
	}
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", p.Path, p.Line, kind, p.What)
	}
	return fmt.Sprintf("%s: %s: %s", p.Path, kind, p.What)
}

// sandboxImports are modules that import but cannot work in the sandbox.
var sandboxImports = regexp.MustCompile(`^\s*(?:import|from)\s+(subprocess|multiprocessing|ctypes|threading|socket|ssl|_thread|concurrent\.futures)\b`)

// Check validates a tenant folder without serving it: tenant.toml, no
// symbolic links or special files anywhere (refused at load), no compiled
// extension modules (the sandbox loads none), and warnings for imports that
// will fail at run time. It reads the folder as the server does (tenantfs:
// no link followed, no FIFO waited on), in lexical order. It does not look
// inside site-packages for imports (libraries often import such modules
// lazily or optionally).
func Check(dir string, ceiling policies.Policy) []Problem {
	var out []Problem
	if _, err := Load(dir, ceiling); err != nil {
		out = append(out, Problem{Error: true, Path: filepath.Join(dir, FileName), What: err.Error()})
	}
	err := tenantfs.Walk(dir, func(e tenantfs.Entry) error {
		path := filepath.Join(dir, filepath.FromSlash(e.Rel))
		inSitePackages := strings.HasPrefix(e.Rel, "site-packages/")
		switch {
		case e.Type&fs.ModeSymlink != 0:
			out = append(out, Problem{Error: true, Path: path, What: "symbolic link: tenant folders may not contain links"})
		case !e.Type.IsDir() && !e.Type.IsRegular():
			out = append(out, Problem{Error: true, Path: path, What: fmt.Sprintf("special file (%v): tenant folders hold only files and folders", e.Type)})
		case strings.HasSuffix(path, ".so") || strings.HasSuffix(path, ".pyd") || strings.HasSuffix(path, ".dylib"):
			out = append(out, Problem{Error: true, Path: path, What: "compiled extension module: the sandbox runs pure Python only (delete it; most packages fall back to Python)"})
		case strings.HasSuffix(path, ".py") && !inSitePackages && e.Type.IsRegular():
			out = append(out, importWarnings(dir, e.Rel)...)
		}
		return nil
	})
	if err != nil {
		out = append(out, Problem{Error: true, Path: dir, What: err.Error()})
	}
	return out
}

func importWarnings(dir, rel string) []Problem {
	path := filepath.Join(dir, filepath.FromSlash(rel))
	f, err := tenantfs.Open(dir, rel)
	if err != nil {
		return []Problem{{Error: true, Path: path, What: err.Error()}}
	}
	defer f.Close()
	var out []Problem
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if m := sandboxImports.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, Problem{Path: path, Line: line,
				What: fmt.Sprintf("imports %s: no processes, threads or network in the sandbox; it will fail when used", m[1])})
		}
	}
	return out
}

// CheckTree checks dir as one tenant when it has a tenant.toml, else every
// folder below it that has one.
func CheckTree(dir string, ceiling policies.Policy) ([]Problem, int, error) {
	dirs, err := Folders(dir)
	if err != nil {
		return nil, 0, err
	}
	var out []Problem
	for _, d := range dirs {
		out = append(out, Check(d, ceiling)...)
	}
	return out, len(dirs), nil
}

// Folders lists the tenant folders of dir: dir itself when it has a
// tenant.toml, else the folders below it that have one, in name order.
func Folders(dir string) ([]string, error) {
	if _, err := os.Lstat(filepath.Join(dir, FileName)); err == nil {
		return []string{dir}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if _, err := os.Lstat(filepath.Join(sub, FileName)); e.IsDir() && err == nil {
			out = append(out, sub)
		}
	}
	return out, nil
}
