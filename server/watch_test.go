package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// TestWatchNestedChanges: a change to a file deep in a tenant's folder, or
// in a folder made after the watch began, reloads the tenant.
func TestWatchNestedChanges(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{"deep": "app = \"app:application\"\nhosts = [\"deep.test\"]\n"})
	pkg := filepath.Join(root, "deep", "pkg", "sub")
	os.MkdirAll(pkg, 0o755)
	os.WriteFile(filepath.Join(root, "deep", "pkg", "__init__.py"), nil, 0o644)
	os.WriteFile(filepath.Join(pkg, "__init__.py"), nil, 0o644)
	os.WriteFile(filepath.Join(pkg, "value.py"), []byte("VALUE = 'one'\n"), 0o644)
	os.WriteFile(filepath.Join(root, "deep", "app.py"), []byte(`from pkg.sub import value
def application(environ, start_response):
    start_response("200 OK", [])
    return [value.VALUE.encode()]
`), 0o644)
	srv, hs := serveTree(t, eng, root, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, nil)
	// until writes the file (again every second: the watcher starts on its
	// own goroutine) until the tenant answers want.
	until := func(want, file, content string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var last time.Time
		for ; ; time.Sleep(50 * time.Millisecond) {
			if time.Since(last) > time.Second && file != "" {
				os.WriteFile(file, []byte(content), 0o644)
				last = time.Now()
			}
			if code, body := get(t, hs.URL, "deep.test", "/"); code == 200 && body == want {
				return
			}
			if time.Now().After(deadline) {
				code, body := get(t, hs.URL, "deep.test", "/")
				t.Fatalf("want %q after the change, still %d %q", want, code, body)
			}
		}
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
