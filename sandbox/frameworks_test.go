package sandbox_test

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// frameworkInstance starts an example tenant, unmodified, from
// examples/tenants (its site-packages vendored by examples/vendor.sh):
// fresh, or restored from a snapshot of a fresh instance.
func frameworkInstance(t *testing.T, tenant, app string, v variant) (*sandbox.Instance, *logLines) {
	t.Helper()
	eng, dir, pyc := vendoredTenant(t, tenant)
	logs := &logLines{}
	cfg := sandbox.AppConfig{App: app, Dir: dir, PycacheDir: pyc, Log: logs.log, Validate: v.validate}
	start := time.Now()
	var inst *sandbox.Instance
	var err error
	if v.restored {
		store := snapshotStore(t, v)
		var snap *sandbox.Snapshot
		key, err := store.Build(context.Background(), eng, cfg)
		if err == nil {
			snap, err = store.Open(key)
		}
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		inst, err = eng.Restore(context.Background(), cfg, snap)
	} else {
		inst, err = eng.NewInstance(context.Background(), cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: instance ready in %v (restored: %t)", tenant, time.Since(start), v.restored)
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst, logs
}

// variant is how a framework test runs its app.
type variant struct {
	validate bool // wrapped in wsgiref.validate.validator
	restored bool // restored from a snapshot rather than started fresh
}

// snapshotStore is an empty store for a restored variant, nil otherwise.
func snapshotStore(t *testing.T, v variant) *sandbox.SnapshotStore {
	if !v.restored {
		return nil
	}
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// vendoredTenant returns an example tenant's folder and its compiled .pyc;
// its site-packages must have been vendored (a failure under CI).
func vendoredTenant(t *testing.T, tenant string) (eng *sandbox.Engine, dir, pyc string) {
	t.Helper()
	dir = "../examples/tenants/" + tenant
	if _, err := os.Stat(dir + "/site-packages"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not vendored under CI: %v", tenant, err)
		}
		t.Skipf("run examples/vendor.sh first: %v", err)
	}
	eng = testEngine(t)
	pyc, err := eng.CompileApp(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return eng, dir, pyc
}

// withVariants runs a test with the app as is and wrapped in
// wsgiref.validate.validator, each fresh and restored from a snapshot:
// restored instances must answer exactly as fresh ones.
func withVariants(t *testing.T, f func(t *testing.T, v variant)) {
	t.Run("plain", func(t *testing.T) { f(t, variant{}) })
	t.Run("validator", func(t *testing.T) { f(t, variant{validate: true}) })
	t.Run("plain-restored", func(t *testing.T) { f(t, variant{restored: true}) })
	t.Run("validator-restored", func(t *testing.T) { f(t, variant{validate: true, restored: true}) })
}

func TestFlaskApp(t *testing.T) { withVariants(t, testFlaskApp) }

func testFlaskApp(t *testing.T, v variant) {
	inst, logs := frameworkInstance(t, "flask", "app:app", v)
	cases := []struct{ method, path, body, want, ctype string }{
		{"GET", "/", "", "Hello from Flask!\n", "text/html; charset=utf-8"},
		{"GET", "/json?x=1", "", `{"args":{"x":"1"},"tenant":"flask"}` + "\n", "application/json"},
		{"GET", "/page/T", "", "<!doctype html><title>T</title>\n<h1>T</h1><ul><li>&lt;a&gt;</li><li>b</li><li>c</li></ul>", "text/html; charset=utf-8"},
		{"POST", "/echo", "payload", "payload", "text/html; charset=utf-8"},
		{"GET", "/missing", "", "", "text/html; charset=utf-8"},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		rec := httptest.NewRecorder()
		o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, logs.log)
		if o.Err != nil {
			t.Fatalf("%s %s: %v\n%s", c.method, c.path, o.Err, logs)
		}
		if c.path == "/missing" {
			if rec.Code != 404 {
				t.Errorf("GET /missing: %d", rec.Code)
			}
			continue
		}
		if rec.Code != 200 || rec.Body.String() != c.want || rec.Header().Get("Content-Type") != c.ctype {
			t.Errorf("%s %s: %d %q %q\nlog:\n%s", c.method, c.path, rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"), logs)
		}
	}
}

func TestBottleApp(t *testing.T) { withVariants(t, testBottleApp) }

func testBottleApp(t *testing.T, v variant) {
	inst, logs := frameworkInstance(t, "bottle", "app:application", v)
	for path, want := range map[string]string{"/": "Hello from Bottle!\n", "/hello/wasm": `{"hello": "wasm"}`} {
		rec := httptest.NewRecorder()
		pool.ServeInstance(inst, rec, httptest.NewRequest("GET", path, nil), pool.RequestInfo{}, logs.log)
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("GET %s: %d %q\nlog:\n%s", path, rec.Code, rec.Body.String(), logs)
		}
	}
}

// TestDjangoAppWithSQLite runs the Django example with its SQLite database in
// a writable data folder: writes persist across instances.
func TestDjangoAppWithSQLite(t *testing.T) { withVariants(t, testDjangoApp) }

func testDjangoApp(t *testing.T, v variant) {
	data := t.TempDir()
	eng, dir, pyc := vendoredTenant(t, "django")
	logs := &logLines{}
	p := pool.New(eng, sandbox.AppConfig{App: "mysite.wsgi:application", Dir: dir, DataDir: data, PycacheDir: pyc, Log: logs.log, Validate: v.validate},
		pool.Config{MaxInstances: 1, MaxRequests: 3, RequestTimeout: time.Minute, Snapshots: snapshotStore(t, v)})
	defer p.Close()
	do := func(method, path, body string) (int, string) {
		rec := httptest.NewRecorder()
		p.Serve(rec, httptest.NewRequest(method, path, strings.NewReader(body)), pool.RequestInfo{}, logs.log)
		return rec.Code, rec.Body.String()
	}
	if code, body := do("GET", "/", ""); code != 200 || body != "Hello from Django!\n" {
		t.Fatalf("GET /: %d %q\nlog:\n%s", code, body, logs)
	}
	for _, text := range []string{"first", "second"} {
		if code, body := do("POST", "/notes/", text); code != 201 || !strings.Contains(body, text) {
			t.Fatalf("POST: %d %q\nlog:\n%s", code, body, logs)
		}
	}
	// max_requests 3 replaced the instance: the rows must come from the file.
	if code, body := do("GET", "/notes/", ""); code != 200 || body != `{"notes": ["first", "second"]}` {
		t.Fatalf("GET /notes/: %d %q\nlog:\n%s", code, body, logs)
	}
	if s := p.Stats(); s.ColdStarts < 2 || (v.restored && s.Restores < 1) {
		t.Fatalf("expected a replaced instance (restored from the snapshot: %t), stats %+v", v.restored, s)
	}
	if _, err := os.Stat(data + "/db.sqlite3"); err != nil {
		t.Fatalf("database not in the data folder: %v", err)
	}
}
