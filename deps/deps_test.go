package deps

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRequirements(t *testing.T) {
	for _, tc := range []struct {
		name, file, data string
		want             []string
	}{
		{"requirements", RequirementsFile, "# deps\nFlask>=2  # web\n\nmarkupsafe==2.1.2\n-r other.txt\n", []string{"flask", "markupsafe"}},
		{"pyproject", PyprojectFile, "[project]\nname = \"x\"\ndependencies = [\"Django>=3.2\", \"sqlparse; python_version >= '3'\", \"zope.interface\"]\n", []string{"django", "sqlparse", "zope-interface"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, tc.file), tc.data)
			lines, from, err := Requirements(dir)
			if err != nil || from != filepath.Join(dir, tc.file) {
				t.Fatalf("Requirements: %v, %q", err, from)
			}
			if got := Names(lines); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("names %q, want %q", got, tc.want)
			}
		})
	}
	if _, from, err := Requirements(t.TempDir()); err == nil || from != "" || !strings.Contains(err.Error(), "no requirements.txt and no pyproject.toml") {
		t.Errorf("no file: %v, %q", err, from)
	}
}

func TestWheelNames(t *testing.T) {
	for name, pure := range map[string]bool{
		"Flask-2.2.2-py3-none-any.whl":                               true,
		"MarkupSafe-2.1.2-cp311-cp311-manylinux_2_17_x86_64.whl":     false,
		"zope.interface-6.0-1-cp311-cp311-manylinux_2_17_x86_64.whl": false,
		"six-1.16.0-py2.py3-none-any.whl":                            true,
		"msgpack-1.0.4-cp311-abi3-macosx_10_9_universal2.whl":        false,
		"Django-3.2.25-py3-none-any.whl":                             true,
	} {
		w, ok := parseWheel(name)
		if !ok || w.Pure() != pure {
			t.Errorf("%s: parsed %v, pure %v, want %v", name, ok, w.Pure(), pure)
		}
	}
	if _, ok := parseWheel("Flask-2.2.2.tar.gz"); ok {
		t.Error("an sdist parsed as a wheel")
	}
}

func TestInstalled(t *testing.T) {
	site := t.TempDir()
	for _, d := range []string{"Flask-2.2.2.dist-info", "zope.interface-6.0.dist-info", "Jinja2-3.1.2.egg-info", "flask"} {
		os.Mkdir(filepath.Join(site, d), 0o755)
	}
	got, err := Installed(site)
	want := map[string]bool{"flask": true, "zope-interface": true, "jinja2": true}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Installed: %v %v, want %v", got, err, want)
	}
}

// TestDropCompiled: a distribution with Python modules loses its native
// ones, with a note; one with native modules only is an error naming it.
func TestDropCompiled(t *testing.T) {
	site := t.TempDir()
	so := "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"
	write(t, filepath.Join(site, "markupsafe/__init__.py"), "")
	write(t, filepath.Join(site, so), "\x7fELF")
	write(t, filepath.Join(site, "MarkupSafe-2.1.2.dist-info/RECORD"), "markupsafe/__init__.py,,\n"+so+",,\n")
	notes, err := dropCompiled(site)
	if err != nil || len(notes) != 1 || !strings.Contains(notes[0], "MarkupSafe-2.1.2") || !strings.Contains(notes[0], so) {
		t.Fatalf("dropCompiled: %q %v", notes, err)
	}
	if _, err := os.Stat(filepath.Join(site, so)); !os.IsNotExist(err) {
		t.Errorf("%s kept: %v", so, err)
	}
	write(t, filepath.Join(site, "fast.cpython-311-x86_64-linux-gnu.so"), "\x7fELF")
	write(t, filepath.Join(site, "fast-1.0.dist-info/RECORD"), "fast.cpython-311-x86_64-linux-gnu.so,,\n")
	if _, err := dropCompiled(site); err == nil || !strings.Contains(err.Error(), "fast-1.0 (fast.cpython-311-x86_64-linux-gnu.so)") {
		t.Errorf("compiled only: %v", err)
	}
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	site, staging := filepath.Join(dir, "site-packages"), filepath.Join(dir, "new")
	write(t, filepath.Join(site, "old.py"), "")
	write(t, filepath.Join(staging, "new.py"), "")
	if err := replace(staging, site); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in the folder: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(site, "new.py")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(site, "old.py")); !os.IsNotExist(err) {
		t.Errorf("old.py: %v", err)
	}
}

// TestExplain: pip's "no matching distribution" becomes what the folders
// hold of the name.
func TestExplain(t *testing.T) {
	links := t.TempDir()
	for _, f := range []string{"fast-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "src_only-1.0.tar.gz", "ok-1.0-py3-none-any.whl"} {
		write(t, filepath.Join(links, f), "")
	}
	pip := func(name string) string {
		return "ERROR: Could not find a version that satisfies the requirement " + name + " (from versions: none)\nERROR: No matching distribution found for " + name + "\n"
	}
	for name, want := range map[string]string{
		"fast":     "fast ships only compiled wheels (fast-1.0-cp311-cp311-manylinux_2_17_x86_64.whl)",
		"src-only": "src-only has only source distributions (src_only-1.0.tar.gz)",
		"nothere":  "nothere (required by req.txt or by what it requires) is in none of the folders searched: " + links,
		"ok":       "no wheel of ok in " + links + " satisfies",
	} {
		if err := explain(pip(name), "req.txt", []string{links}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}
