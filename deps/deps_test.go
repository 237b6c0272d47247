package deps

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
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
		{"requirements", RequirementsFile, "# deps\nFlask>=2  # web\n\nmarkupsafe==2.1.2\n", []string{"flask", "markupsafe"}},
		{"pyproject", PyprojectFile, "[project]\nname = \"x\"\ndependencies = [\"Django>=3.2\", \"sqlparse; python_version >= '3'\", \"zope.interface\"]\n", []string{"django", "sqlparse", "zope-interface"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, tc.file), tc.data)
			spec, err := Requirements(dir)
			if err != nil || spec.From != filepath.Join(dir, tc.file) {
				t.Fatalf("Requirements: %v, %q", err, spec.From)
			}
			if got := Names(spec.Lines); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("names %q, want %q", got, tc.want)
			}
		})
	}
	if spec, err := Requirements(t.TempDir()); err == nil || spec.From != "" || !strings.Contains(err.Error(), "no requirements.txt and no pyproject.toml") {
		t.Errorf("no file: %v, %q", err, spec.From)
	}
}

// TestNestedRequirements: -r and -c files are followed in place, relative to
// the file naming them, in every spelling pip takes; a continued line is
// one line; loops, missing files and URLs are errors naming the files.
func TestNestedRequirements(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, RequirementsFile), "flask>=2\n-r reqs/base.txt\n--constraint=constraints.txt\nrequests \\\n  [socks]  # continued\n")
	write(t, filepath.Join(dir, "reqs", "base.txt"), "--requirement common.txt\nsqlparse\n")
	write(t, filepath.Join(dir, "reqs", "common.txt"), "-rmore.txt\nasgiref\n")
	write(t, filepath.Join(dir, "reqs", "more.txt"), "# nothing but a comment\ntyping-extensions\n")
	write(t, filepath.Join(dir, "constraints.txt"), "django<5\n-c reqs/pins.txt\n")
	write(t, filepath.Join(dir, "reqs", "pins.txt"), "sqlparse==0.4.4\n")
	spec, err := Requirements(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		From:        filepath.Join(dir, RequirementsFile),
		Lines:       []string{"flask>=2", "typing-extensions", "asgiref", "sqlparse", "requests   [socks]"},
		Constraints: []string{"django<5", "sqlparse==0.4.4"},
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("got %#v\nwant %#v", spec, want)
	}

	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // each in the error
	}{
		{"loop", map[string]string{"requirements.txt": "-r a.txt\n", "a.txt": "x\n-r sub/b.txt\n", "sub/b.txt": "-r ../a.txt\n"},
			[]string{"loop", "a.txt -> ", "sub/b.txt -> ", "/a.txt"}},
		{"self", map[string]string{"requirements.txt": "x\n-c requirements.txt\n"}, []string{"loop", "requirements.txt -> "}},
		{"missing", map[string]string{"requirements.txt": "x\n\n-r nosuch.txt\n"}, []string{"requirements.txt line 3: -r nosuch.txt", "nosuch.txt"}},
		{"url", map[string]string{"requirements.txt": "-r https://example.invalid/r.txt\n"}, []string{"line 1", "only files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				write(t, filepath.Join(dir, name), data)
			}
			_, err := Requirements(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
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

// TestTenantRequirementsStayInside: a tenant's requirements files are its
// own, so they cannot make the host read anything outside its folder, a
// link, a FIFO or an endless file; the operator's own -r FILE can include
// any file.
func TestTenantRequirementsStayInside(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	write(t, secret, "TOP-SECRET-LINE\n")
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"absolute", func(dir string) { write(t, filepath.Join(dir, RequirementsFile), "flask\n-r "+secret+"\n") },
			"only files of its own folder"},
		{"climbs out", func(dir string) {
			rel, _ := filepath.Rel(filepath.Join(dir, "sub"), secret)
			write(t, filepath.Join(dir, "sub", "a.txt"), "-c "+rel+"\n")
			write(t, filepath.Join(dir, RequirementsFile), "-r sub/a.txt\n")
		}, "only files of its own folder"},
		{"link", func(dir string) {
			write(t, filepath.Join(dir, RequirementsFile), "-r inc.txt\n")
			if err := os.Symlink(secret, filepath.Join(dir, "inc.txt")); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"linked requirements.txt", func(dir string) {
			if err := os.Symlink(secret, filepath.Join(dir, RequirementsFile)); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"linked folder", func(dir string) {
			write(t, filepath.Join(dir, RequirementsFile), "-r out/secret.txt\n")
			if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"fifo", func(dir string) {
			write(t, filepath.Join(dir, RequirementsFile), "-r pipe.txt\n")
			if err := syscall.Mkfifo(filepath.Join(dir, "pipe.txt"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"too large together", func(dir string) {
			big := strings.Repeat("x\n", MaxRequirementsBytes/4)
			write(t, filepath.Join(dir, "a.txt"), big)
			write(t, filepath.Join(dir, "b.txt"), big+big)
			write(t, filepath.Join(dir, RequirementsFile), "-r a.txt\n-r b.txt\n")
		}, "over 1048576 bytes together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			spec, err := Requirements(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q in it", err, tc.want)
			}
			if strings.Contains(err.Error(), "TOP-SECRET") || strings.Contains(strings.Join(spec.Lines, " ")+strings.Join(spec.Constraints, " "), "TOP-SECRET") {
				t.Errorf("the outside file was read: %v %#v", err, spec)
			}
		})
	}

	// The operator's file may include what it likes.
	op := filepath.Join(t.TempDir(), "ops.txt")
	write(t, op, "-r "+secret+"\n")
	spec, err := ReadRequirements(op)
	if err != nil || !reflect.DeepEqual(spec.Lines, []string{"TOP-SECRET-LINE"}) {
		t.Errorf("operator's file: %#v, %v", spec, err)
	}
}
