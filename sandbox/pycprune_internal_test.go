package sandbox

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRetainCompiled builds a .pyc cache by hand (app folders hard-linking
// shared entries, as CompileApp lays them out) and prunes it: what is kept
// or young stays, what no app uses and is idle goes, and a shared entry
// goes only once no app folder links it.
func TestRetainCompiled(t *testing.T) {
	e := &Engine{cacheDir: filepath.Join(t.TempDir(), "wazero")}
	root := e.pycacheRoot()
	old := time.Now().Add(-48 * time.Hour)
	write := func(rel, content string) string {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(shared, app string) {
		t.Helper()
		to := filepath.Join(root, filepath.FromSlash(app))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(root, filepath.FromSlash(shared)), to); err != nil {
			t.Fatal(err)
		}
	}
	age := func(rel string, at time.Time) {
		t.Helper()
		if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(rel)), at, at); err != nil {
			t.Fatal(err)
		}
	}
	write("shared/flask/flask/app.cpython-311.pyc", "flask")    // linked by kept and by old
	write("shared/bottle/bottle.cpython-311.pyc", "bottle-pyc") // linked by old only
	write("shared/young/young.cpython-311.pyc", "young")        // linked by nobody, touched recently
	write("shared/orphan/orphan.cpython-311.pyc", "orphan-pyc") // linked by nobody, idle
	write("kept/app/app.cpython-311.pyc", "kept")               // kept, though idle
	link("shared/flask/flask/app.cpython-311.pyc", "kept/app/site-packages/flask/app.cpython-311.pyc")
	write("old/app/app.cpython-311.pyc", "old-app") // not kept, idle
	link("shared/flask/flask/app.cpython-311.pyc", "old/app/site-packages/flask/app.cpython-311.pyc")
	link("shared/bottle/bottle.cpython-311.pyc", "old/app/site-packages/bottle.cpython-311.pyc")
	write("recent/app/app.cpython-311.pyc", "recent") // not kept, used within grace
	write("gone.tmp-1/pyc/x.pyc", "x")                // interrupted compile, 2 h ago
	write("busy.tmp-2/pyc/y.pyc", "y")                // compile in progress
	for _, rel := range []string{"shared/flask", "shared/bottle", "shared/orphan", "kept", "old"} {
		age(rel, old)
	}
	age("gone.tmp-1", time.Now().Add(-2*time.Hour))

	res, err := e.RetainCompiled([]string{filepath.Join(root, "kept")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// old's app.pyc and bottle's and orphan's files lost their last link;
	// gone.tmp-1's x.pyc too.
	want := PruneResult{Apps: 1, Shared: 2, Bytes: int64(len("old-app") + len("bottle-pyc") + len("orphan-pyc") + len("x"))}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("RetainCompiled result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"busy.tmp-2", "kept", "recent", "shared"}, folderNames(t, root)); diff != "" {
		t.Errorf("cache folders (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"flask", "young"}, folderNames(t, filepath.Join(root, "shared"))); diff != "" {
		t.Errorf("shared entries (-want +got):\n%s", diff)
	}
	if st, err := os.Stat(filepath.Join(root, "kept")); err != nil || time.Since(st.ModTime()) > time.Hour {
		t.Errorf("the kept folder was not touched: %v %v", st.ModTime(), err)
	}

	// Once kept goes too, flask is linked by nobody: it goes with it (the
	// next call, as its own idle time is old).
	age("kept", old)
	age("shared/flask", old)
	if res, err = e.RetainCompiled(nil, 24*time.Hour); err != nil || res.Apps != 1 || res.Shared != 1 {
		t.Errorf("second prune: %+v, %v; want the kept app and flask removed", res, err)
	}
	if diff := cmp.Diff([]string{"young"}, folderNames(t, filepath.Join(root, "shared"))); diff != "" {
		t.Errorf("shared entries after the second prune (-want +got):\n%s", diff)
	}
}

// TestRetainCompiledNoCache: a server that never compiled anything has no
// cache to prune, and that is no error.
func TestRetainCompiledNoCache(t *testing.T) {
	e := &Engine{cacheDir: filepath.Join(t.TempDir(), "wazero")}
	if res, err := e.RetainCompiled(nil, time.Hour); err != nil || res != (PruneResult{}) {
		t.Errorf("RetainCompiled on no cache: %+v, %v", res, err)
	}
}

func folderNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
