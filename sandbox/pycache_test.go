package sandbox_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestCompileAppRejectsSymlinks: an app folder with a symbolic link is
// refused at load, with the link named.
func TestCompileAppRejectsSymlinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "secrets")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	_, err := testEngine(t).CompileApp(context.Background(), dir, 0)
	if !errors.Is(err, sandbox.ErrSymlinkInApp) || !strings.Contains(err.Error(), link) {
		t.Fatalf("err = %v, want ErrSymlinkInApp naming %s", err, link)
	}
}

// TestCompileAppCachesByContent: the same sources give the same cache
// folder with the .pyc in it; a changed source gives a new one.
func TestCompileAppCachesByContent(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.py")
	if err := os.WriteFile(src, []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng := testEngine(t)
	first, err := eng.CompileApp(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(first, "app", "app.cpython-311.pyc")); err != nil {
		t.Fatalf("no .pyc in %s: %v", first, err)
	}
	again, _ := eng.CompileApp(context.Background(), dir, 0)
	if again != first {
		t.Fatalf("unchanged sources compiled again: %s vs %s", again, first)
	}
	if err := os.WriteFile(src, []byte("x = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, _ := eng.CompileApp(context.Background(), dir, 0)
	if changed == first {
		t.Fatal("changed sources reused the old .pyc folder")
	}
}

// writeTree writes files (path relative to dir -> content) with the
// modification time mtime.
func writeTree(t *testing.T, dir string, files map[string]string, mtime time.Time) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// pycFlags reads a .pyc's flags word (PEP 552: 0 timestamp-based, 3
// hash-based and checked against the source).
func pycFlags(t *testing.T, path string) uint32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 16 {
		t.Fatalf("reading %s: %v (%d bytes)", path, err, len(b))
	}
	return binary.LittleEndian.Uint32(b[4:8])
}

// TestCompileAppSharesPackagesByContent: tenants whose site-packages
// entries have the same files (whatever their times) share one compiled
// copy of each (the same file on disk, hash-based .pyc), while their own
// code is compiled apart; an entry with the same names, sizes and times
// but another content gets its own; an app's own code cannot take the
// compiler's place; and the shared files are read-only in the sandbox and
// valid for the guest's loader.
func TestCompileAppSharesPackagesByContent(t *testing.T) {
	root := t.TempDir()
	pkgs := map[string]string{
		"site-packages/pkgx/__init__.py":            "VALUE = 'x'\n",
		"site-packages/pkgx/sub.py":                 "SUB = 1\n",
		"site-packages/mod.py":                      "M = 1\n",
		"site-packages/pkgx-1.0.dist-info/METADATA": "Name: pkgx\n",
	}
	app := "import pkgx, mod\n" + `
import _imp, importlib._bootstrap_external as ext
def application(environ, start_response):
    p = "/pyc/app/site-packages/pkgx/__init__.cpython-311.pyc"
    try:
        with open(p, "r+b") as f:
            f.write(b"junk")
        w = "written"
    except OSError:
        w = "refused"
    with open(p, "rb") as f:
        data = f.read()
    with open("/app/site-packages/pkgx/__init__.py", "rb") as f:
        src = f.read()
    valid = data[:4] == ext.MAGIC_NUMBER and data[8:16] == _imp.source_hash(ext._RAW_MAGIC_NUMBER, src)
    start_response("200 OK", [])
    return [("%s %s %s" % (w, valid, pkgx.VALUE)).encode()]
`
	t1, t2 := time.Unix(1_600_000_000, 0), time.Unix(1_700_000_000, 0)
	a, b, c, d := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "c"), filepath.Join(root, "d")
	writeTree(t, a, pkgs, t1)
	writeTree(t, a, map[string]string{"app.py": app}, t1)
	writeTree(t, b, pkgs, t2)
	writeTree(t, b, map[string]string{"app.py": app + "# b\n"}, t2)
	// c: pkgx's __init__ differs in content only (same size, same time).
	writeTree(t, c, pkgs, t1)
	writeTree(t, c, map[string]string{"app.py": app, "site-packages/pkgx/__init__.py": "VALUE = 'y'\n"}, t1)
	// d: its own compileall.py (at the top and in site-packages) would
	// write junk over what it compiles if the compiler imported it.
	evil := "import os\nfor r, _, fs in os.walk('/pyc'):\n    for f in fs:\n        open(os.path.join(r, f), 'wb').write(b'junk')\nraise SystemExit(0)\n"
	writeTree(t, d, pkgs, t1)
	writeTree(t, d, map[string]string{"app.py": app, "compileall.py": evil, "site-packages/compileall.py": evil,
		"site-packages/pkgx/__init__.py": "VALUE = 'z'\n"}, t1)

	eng := testEngine(t)
	compiled := map[string]string{}
	for _, dir := range []string{a, b, c, d} {
		pyc, err := eng.CompileApp(context.Background(), dir, 0)
		if err != nil {
			t.Fatalf("CompileApp(%s): %v", dir, err)
		}
		compiled[filepath.Base(dir)] = pyc
	}
	if compiled["a"] == compiled["b"] || compiled["a"] == compiled["c"] {
		t.Fatalf("apps with different sources share a folder: %v", compiled)
	}
	same := func(x, y, rel string) bool {
		t.Helper()
		sx, err := os.Stat(filepath.Join(compiled[x], "app", filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		sy, err := os.Stat(filepath.Join(compiled[y], "app", filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		return os.SameFile(sx, sy)
	}
	initPyc, modPyc := "site-packages/pkgx/__init__.cpython-311.pyc", "site-packages/mod.cpython-311.pyc"
	if !same("a", "b", initPyc) || !same("a", "b", "site-packages/pkgx/sub.cpython-311.pyc") || !same("a", "b", modPyc) {
		t.Error("a and b have the same site-packages (other times) but do not share its compiled files")
	}
	if same("a", "b", "app.cpython-311.pyc") {
		t.Error("a and b share the compiled app.py, though theirs differ")
	}
	if same("a", "c", initPyc) || same("a", "c", "site-packages/pkgx/sub.cpython-311.pyc") {
		t.Error("c's pkgx differs from a's in content only, yet c got a's compiled pkgx")
	}
	if !same("a", "c", modPyc) {
		t.Error("a and c have the same mod.py but do not share its compiled file")
	}
	if f := pycFlags(t, filepath.Join(compiled["a"], "app", initPyc)); f != 3 {
		t.Errorf("a package's .pyc has flags %d, want 3 (hash-based, checked)", f)
	}
	if f := pycFlags(t, filepath.Join(compiled["a"], "app", "app.cpython-311.pyc")); f != 0 {
		t.Errorf("the app's own .pyc has flags %d, want 0 (timestamp)", f)
	}
	// d's compileall.py was not run: its packages' .pyc are real.
	dInit, err := os.ReadFile(filepath.Join(compiled["d"], "app", filepath.FromSlash(initPyc)))
	aInit, _ := os.ReadFile(filepath.Join(compiled["a"], "app", filepath.FromSlash(initPyc)))
	if err != nil || len(dInit) < 16 || string(dInit[:4]) != string(aInit[:4]) {
		t.Errorf("d's compiled pkgx is not a .pyc (%v, %q): its own compileall.py ran", err, dInit)
	}

	for dir, want := range map[string]string{a: "refused True x", c: "refused True y"} {
		logs := &logLines{}
		inst, err := eng.NewInstance(context.Background(), sandbox.AppConfig{App: "app:application", Dir: dir, PycacheDir: compiled[filepath.Base(dir)], Log: logs.log})
		if err != nil {
			t.Fatalf("NewInstance(%s): %v", dir, err)
		}
		rec, o := do(inst, httptest.NewRequest("GET", "/", nil), logs)
		inst.Close(context.Background())
		if o.Err != nil || rec.Body.String() != want {
			t.Errorf("%s: %q (%v), want %q (the shared .pyc read-only and valid for its source)\n%s", dir, rec.Body.String(), o.Err, want, logs)
		}
	}
}
