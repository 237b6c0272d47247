package server_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// TestPruneCompiledAfterReload: with a retention, a reload removes the
// compiled code of the version it replaced, but only once that version's
// requests in flight have ended, and never the current version's.
func TestPruneCompiledAfterReload(t *testing.T) {
	// An engine whose .pyc cache (<cache-dir>/../pyc) is this test's own,
	// with wazero's compilation cache shared through a link.
	tmp := t.TempDir()
	cacheDir := filepath.Join(tmp, "wazero")
	if err := os.MkdirAll(sandbox.DefaultCacheDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sandbox.DefaultCacheDir(), cacheDir); err != nil {
		t.Fatal(err)
	}
	eng, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: testinterp.Require(t), CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	pycRoot := filepath.Join(tmp, "pyc")
	appFolders := func() []string {
		t.Helper()
		entries, err := os.ReadDir(pycRoot)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			if e.Name() != "shared" {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		return names
	}

	const slowApp = `
import time
def application(environ, start_response):
    time.sleep(float(environ["QUERY_STRING"] or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [TAG.encode()]
`
	root := tenantDir(t, map[string]string{"shop": "app = \"app:application\"\nhosts = [\"shop.test\"]\n"})
	app := filepath.Join(root, "shop", "app.py")
	if err := os.WriteFile(app, []byte("TAG = \"v1\"\n"+slowApp), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), eng, server.Config{TenantDir: root, Ceiling: policies.DefaultCeiling,
		MemoryBudget: 1 << 30, PycRetention: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func(query string) string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/?"+query, nil)
		req.Host = "shop.test"
		srv.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	if got := get(""); got != "v1" {
		t.Fatalf("v1 answered %q", got)
	}
	v1 := appFolders()
	if len(v1) != 1 {
		t.Fatalf("after the first load the cache holds %v, want one app folder", v1)
	}

	// A slow request holds v1 while v2 is loaded.
	slow := make(chan string)
	go func() { slow <- get("2") }()
	time.Sleep(500 * time.Millisecond)
	if err := os.WriteFile(app, []byte("TAG = \"v2\"\n"+slowApp), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get(""); got != "v2" {
		t.Fatalf("after the reload: %q", got)
	}
	both := appFolders()
	if len(both) != 2 {
		t.Errorf("while v1 has a request in flight the cache holds %v, want v1's and v2's folders", both)
	}
	if got := <-slow; got != "v1" {
		t.Errorf("the request in flight during the reload answered %q, want v1", got)
	}

	// Once it ended, the next load (or the hourly prune) removes v1's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := srv.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		now := appFolders()
		if len(now) == 1 {
			if now[0] == v1[0] {
				t.Fatalf("the prune kept v1's folder and removed v2's: %v", now)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v1's folder is still there after its request ended: %v", now)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := get(""); got != "v2" {
		t.Errorf("after the prune: %q", got)
	}
}
