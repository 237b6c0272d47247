package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// valueApp answers pkg.sub.value.VALUE (writeValuePackage).
const valueApp = `from pkg.sub import value
def application(environ, start_response):
    start_response("200 OK", [])
    return [value.VALUE.encode()]
`

// writeValuePackage writes pkg/sub/value.py, VALUE = value, and its
// packages below dir.
func writeValuePackage(dir, value string) {
	os.MkdirAll(filepath.Join(dir, "pkg", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "__init__.py"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "pkg", "sub", "__init__.py"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "pkg", "sub", "value.py"), []byte(fmt.Sprintf("VALUE = %q\n", value)), 0o644)
}

// answersAfter calls change, again every second (the watcher starts on its
// own goroutine), until host answers 200 with want at url, and fails t if
// it has not after timeout.
func answersAfter(t *testing.T, url, host, want string, timeout time.Duration, change func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last time.Time
	for ; ; time.Sleep(50 * time.Millisecond) {
		if time.Since(last) > time.Second {
			change()
			last = time.Now()
		}
		if code, body := get(t, url, host, "/"); code == 200 && body == want {
			return
		}
		if time.Now().After(deadline) {
			code, body := get(t, url, host, "/")
			t.Fatalf("%s: want %q after the change, still %d %q", host, want, code, body)
		}
	}
}

// TestWatchNestedChanges: a change to a file deep in a tenant's folder, or
// in a folder made after the watch began, reloads the tenant.
func TestWatchNestedChanges(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{"deep": "app = \"app:application\"\nhosts = [\"deep.test\"]\n"})
	pkg := filepath.Join(root, "deep", "pkg", "sub")
	writeValuePackage(filepath.Join(root, "deep"), "one")
	os.WriteFile(filepath.Join(root, "deep", "app.py"), []byte(valueApp), 0o644)
	srv, hs := serveTree(t, eng, root, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, nil)
	// until writes the file (if any) until the tenant answers want.
	until := func(want, file, content string) {
		t.Helper()
		answersAfter(t, hs.URL, "deep.test", want, 30*time.Second, func() {
			if file != "" {
				os.WriteFile(file, []byte(content), 0o644)
			}
		})
	}
	until("one", "", "")
	until("two", filepath.Join(pkg, "value.py"), "VALUE = 'two'\n")

	// A folder made now is watched too: the app moves to it (a change at
	// the top), then only the new folder's file changes.
	fresh := filepath.Join(root, "deep", "pkg", "fresh")
	os.Mkdir(fresh, 0o755)
	os.WriteFile(filepath.Join(fresh, "__init__.py"), nil, 0o644)
	os.WriteFile(filepath.Join(fresh, "value.py"), []byte("VALUE = 'three'\n"), 0o644)
	until("three", filepath.Join(root, "deep", "app.py"), `from pkg.fresh import value
def application(environ, start_response):
    start_response("200 OK", [])
    return [value.VALUE.encode()]
`)
	until("four", filepath.Join(fresh, "value.py"), "VALUE = 'four'\n")
}

// TestWatchBounded: site-packages is watched at its top only, whatever it
// holds, so a tenant with 300 package folders uses a handful of watches
// and its own code still reloads; a tenant with more folders than the
// per-tenant bound, and one whose watches the system refuses (ENOSPC, as
// a kernel out of inotify watches), are polled instead, and a change deep
// in either still reloads it.
func TestWatchBounded(t *testing.T) {
	defer server.SetWatchLimits(20, 200*time.Millisecond, "refused")()
	eng := testEngine(t)
	toml := func(name string) string { return "app = \"app:application\"\nhosts = [\"" + name + ".test\"]\n" }
	root := tenantDir(t, map[string]string{"big": toml("big"), "wide": toml("wide"), "refused": toml("refused")})
	app := `from pkg.sub import value
import extra
def application(environ, start_response):
    start_response("200 OK", [])
    return [(value.VALUE + "-" + extra.EXTRA).encode()]
`
	for _, name := range []string{"big", "wide", "refused"} {
		dir := filepath.Join(root, name)
		os.MkdirAll(filepath.Join(dir, "site-packages"), 0o755)
		os.WriteFile(filepath.Join(dir, "site-packages", "extra.py"), []byte("EXTRA = 'a'\n"), 0o644)
		os.MkdirAll(filepath.Join(dir, "pkg", "sub"), 0o755)
		os.WriteFile(filepath.Join(dir, "pkg", "__init__.py"), nil, 0o644)
		os.WriteFile(filepath.Join(dir, "pkg", "sub", "__init__.py"), nil, 0o644)
		os.WriteFile(filepath.Join(dir, "pkg", "sub", "value.py"), []byte("VALUE = 'one'\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "app.py"), []byte(app), 0o644)
	}
	for i := 0; i < 300; i++ {
		os.MkdirAll(filepath.Join(root, "big", "site-packages", "lib", fmt.Sprintf("d%03d", i), "inner"), 0o755)
	}
	for i := 0; i < 30; i++ { // more than the bound of 20, in the tenant's own code
		os.MkdirAll(filepath.Join(root, "wide", "data", fmt.Sprintf("d%02d", i)), 0o755)
	}
	srv, hs := serveTree(t, eng, root, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, nil)
	var watched map[string]int
	var polled []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		watched, polled, _ = srv.WatchCounts()
		if len(polled) == 2 && watched[filepath.Join(root, "big")] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watched %v, polled %v; want big watched, wide and refused polled", watched, polled)
		}
	}
	sort.Strings(polled)
	if want := []string{filepath.Join(root, "refused"), filepath.Join(root, "wide")}; !cmp.Equal(polled, want) {
		t.Errorf("polled %v, want %v", polled, want)
	}
	// big: its root, assets, assets/css, pkg, pkg/sub, site-packages.
	if n := watched[filepath.Join(root, "big")]; n != 6 {
		t.Errorf("big has %d folders watched, want 6 (site-packages at its top only)", n)
	}
	for _, name := range []string{"wide", "refused"} {
		if n := watched[filepath.Join(root, name)]; n != 0 {
			t.Errorf("%s is polled but still holds %d watches", name, n)
		}
	}
	// until calls change until name answers want.
	until := func(name, want string, change func()) {
		t.Helper()
		answersAfter(t, hs.URL, name+".test", want, 30*time.Second, change)
	}
	// Each tenant reloads on a change deep in its own code: big by its
	// watches, the others by polling.
	for _, name := range []string{"big", "wide", "refused"} {
		until(name, "two-a", func() {
			os.WriteFile(filepath.Join(root, name, "pkg", "sub", "value.py"), []byte("VALUE = 'two'\n"), 0o644)
		})
	}
	// An install's swap of site-packages (as deps.Install does it) reloads
	// big, though nothing below site-packages is watched.
	big := filepath.Join(root, "big")
	staged := filepath.Join(big, ".site-packages.new-1")
	os.MkdirAll(staged, 0o755)
	os.WriteFile(filepath.Join(staged, "extra.py"), []byte("EXTRA = 'b'\n"), 0o644)
	os.Rename(filepath.Join(big, "site-packages"), staged+".old")
	os.Rename(staged, filepath.Join(big, "site-packages"))
	os.RemoveAll(staged + ".old")
	until("big", "two-b", func() {})
	if watched, _, _ := srv.WatchCounts(); watched[big] > 6 {
		t.Errorf("big has %d folders watched after the install, want 6 at most", watched[big])
	}
}

// TestWatchFolderSwap: a watched folder with folders below it, renamed
// away and replaced by a new one (a deploy's swap), leaves no stale
// watches: an edit in the new folder's subfolder reloads the tenant, and
// repeated swaps do not make the tenant's watch count grow.
func TestWatchFolderSwap(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{"swap": "app = \"app:application\"\nhosts = [\"swap.test\"]\n"})
	tenant := filepath.Join(root, "swap")
	writeValuePackage(tenant, "one")
	os.WriteFile(filepath.Join(tenant, "app.py"), []byte(valueApp), 0o644)
	srv, hs := serveTree(t, eng, root, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, nil)
	// root, assets, assets/css, pkg, pkg/sub.
	const folders = 5
	waitWatched := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			watched, _, _ := srv.WatchCounts()
			if watched[tenant] == folders {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: swap has %d folders watched, want %d", what, watched[tenant], folders)
			}
		}
	}
	// until calls change until the tenant answers want.
	until := func(want string, change func()) {
		t.Helper()
		answersAfter(t, hs.URL, "swap.test", want, 20*time.Second, change)
	}
	waitWatched("at start")
	until("one", func() {})
	for i := 1; i <= 3; i++ {
		// The new pkg is made outside the tenant and moved in whole, so
		// that no reload sees half of it.
		staged := t.TempDir()
		writeValuePackage(staged, fmt.Sprintf("%d-new", i))
		os.Rename(filepath.Join(tenant, "pkg"), filepath.Join(tenant, "pkg.old"))
		os.Rename(filepath.Join(staged, "pkg"), filepath.Join(tenant, "pkg"))
		until(fmt.Sprintf("%d-new", i), func() {})
		until(fmt.Sprintf("%d-edited", i), func() {
			os.WriteFile(filepath.Join(tenant, "pkg", "sub", "value.py"), []byte(fmt.Sprintf("VALUE = '%d-edited'\n", i)), 0o644)
		})
		os.RemoveAll(filepath.Join(tenant, "pkg.old"))
		waitWatched(fmt.Sprintf("after swap %d", i))
	}
}

// TestWatchPolledGone: a polled tenant whose folder is deleted is no
// longer polled after the reload that follows, and one polled for the
// per-tenant bound whose folders go back under it is watched again.
func TestWatchPolledGone(t *testing.T) {
	defer server.SetWatchLimits(4, 100*time.Millisecond, "")()
	eng := testEngine(t)
	toml := func(name string) string { return "app = \"app:application\"\nhosts = [\"" + name + ".test\"]\n" }
	root := tenantDir(t, map[string]string{"keep": toml("keep"), "gone": toml("gone"), "shrink": toml("shrink")})
	for _, name := range []string{"gone", "shrink"} {
		for i := 0; i < 5; i++ { // with root, assets and assets/css, more than 4
			os.MkdirAll(filepath.Join(root, name, "data", fmt.Sprintf("d%d", i)), 0o755)
		}
	}
	srv, _ := serveTree(t, eng, root, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, nil)
	gone, shrink := filepath.Join(root, "gone"), filepath.Join(root, "shrink")
	// wait waits until ok holds of the counts.
	wait := func(what string, ok func(watched map[string]int, polled []string) bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			watched, polled, _ := srv.WatchCounts()
			sort.Strings(polled)
			if ok(watched, polled) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: watched %v, polled %v", what, watched, polled)
			}
		}
	}
	wait("at start: want gone and shrink polled", func(_ map[string]int, polled []string) bool {
		return cmp.Equal(polled, []string{gone, shrink})
	})
	os.RemoveAll(gone)
	wait("after gone is deleted: want shrink polled only", func(_ map[string]int, polled []string) bool {
		return cmp.Equal(polled, []string{shrink})
	})
	os.RemoveAll(filepath.Join(shrink, "data"))
	wait("after shrink's data is deleted: want it watched (3 folders), nothing polled", func(watched map[string]int, polled []string) bool {
		return len(polled) == 0 && watched[shrink] == 3
	})
}

// TestWatchPollTooLarge: a polled tenant whose tree holds more entries
// than one look reads is no longer polled, and that is logged: it reloads
// on SIGHUP only.
func TestWatchPollTooLarge(t *testing.T) {
	defer server.SetWatchLimits(4, 100*time.Millisecond, "")()
	defer server.SetPollEntries(50)()
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{"huge": "app = \"app:application\"\nhosts = [\"huge.test\"]\n"})
	huge := filepath.Join(root, "huge")
	for i := 0; i < 10; i++ {
		dir := filepath.Join(huge, "data", fmt.Sprintf("d%d", i))
		os.MkdirAll(dir, 0o755)
		for j := 0; j < 5; j++ {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", j)), nil, 0o644)
		}
	}
	logs := &testlog.Buffer{}
	srv, _ := serveTree(t, eng, root, server.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, nil)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		watched, polled, sighupOnly := srv.WatchCounts()
		if len(polled) == 0 && cmp.Equal(sighupOnly, []string{huge}) && watched[huge] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watched %v, polled %v, SIGHUP only %v; want huge SIGHUP only", watched, polled, sighupOnly)
		}
	}
	if want := "tenant folder too large to poll; it reloads on SIGHUP only"; strings.Count(logs.String(), want) != 1 {
		t.Errorf("want %q logged once, logs:\n%s", want, logs)
	}
}
