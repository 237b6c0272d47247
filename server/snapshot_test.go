package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// TestSnapshotsBuiltInTheBackgroundAndFollowReloads: after load the server
// builds each tenant's snapshot by itself, the tenant's first request is
// then served by a restored instance, and a changed tenant gets a new
// snapshot while the old file is removed.
func TestSnapshotsBuiltInTheBackgroundAndFollowReloads(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{
		"one": "app = \"app:application\"\nhosts = [\"one.test\"]\n[pool]\nmin_warm = 0\n",
		"two": "app = \"app:application\"\nhosts = [\"two.test\"]\n[pool]\nmin_warm = 0\n",
	})
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(context.Background(), eng, server.Config{
		TenantDir: root, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 30, Snapshots: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	snapshots := func() []string {
		m, _ := filepath.Glob(filepath.Join(store.Dir(), "*.snap"))
		return m
	}
	waitUntil(t, "two snapshots built in the background", func() bool { return len(snapshots()) == 2 })
	before := snapshots()
	waitUntil(t, "the metric to count both snapshots ready", func() bool {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return strings.Contains(rec.Body.String(), "\nwsgi_wasm_snapshots_ready 2\n")
	})

	hs := httptest.NewServer(srv)
	defer hs.Close()
	get := func(host string) string {
		req, _ := http.NewRequest("GET", hs.URL+"/x", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b [256]byte
		n, _ := resp.Body.Read(b[:])
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", host, resp.StatusCode, b[:n])
		}
		return string(b[:n])
	}
	started := eng.InstancesStarted()
	if body := get("one.test"); body != "one||/x" {
		t.Fatalf("one.test: %q", body)
	}
	if eng.InstancesRestored() < 1 || eng.InstancesStarted() != started {
		t.Errorf("the first request of a tenant with a snapshot started fresh: restored %d, started %d -> %d",
			eng.InstancesRestored(), started, eng.InstancesStarted())
	}

	app := filepath.Join(root, "two", "app.py")
	if err := os.WriteFile(app, []byte("TAG = \"two-v2\"\n"+echoApp), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(app, later, later)
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if body := get("two.test"); body != "two-v2||/x" {
		t.Fatalf("two.test after reload: %q", body)
	}
	waitUntil(t, "the changed tenant's new snapshot, the old one removed", func() bool {
		now := snapshots()
		return len(now) == 2 && (now[0] != before[0] || now[1] != before[1])
	})
	if body := get("one.test"); body != "one||/x" {
		t.Fatalf("one.test after reload: %q", body)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWarmUpRecordsWriteSet: a tenant with a warmup path gets its
// snapshot's write set from that request once the snapshot is built; one
// without gets none until it serves, and a warm-up that fails records none
// and is logged.
func TestWarmUpRecordsWriteSet(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{
		"warm":    "app = \"check:application\"\nhosts = [\"*.warm.test\", \"warm.test\"]\npath_prefix = \"/shop\"\nwarmup = \"/shop/ready?deep=1\"\n",
		"plain":   "app = \"app:application\"\nhosts = [\"plain.test\"]\n",
		"failing": "app = \"fail:application\"\nhosts = [\"failing.test\"]\nwarmup = \"/ready\"\n",
	})
	fail := "def application(environ, start_response):\n    raise RuntimeError('not ready')\n"
	if err := os.WriteFile(filepath.Join(root, "failing", "fail.py"), []byte(fail), 0o644); err != nil {
		t.Fatal(err)
	}
	// The warm tenant answers 200 (and so gets a write set) only to the
	// request its tenant.toml describes, as its own clients reach it.
	check := `
def application(environ, start_response):
    seen = (environ["REQUEST_METHOD"], environ["HTTP_HOST"], environ["SCRIPT_NAME"],
            environ["PATH_INFO"], environ["QUERY_STRING"], environ["HTTP_USER_AGENT"])
    ok = seen == ("GET", "warm.test", "/shop", "/ready", "deep=1", "wsgi-wasm warm-up")
    start_response("200 OK" if ok else "500 Internal Server Error", [("Content-Type", "text/plain")])
    return [repr(seen).encode()]
`
	if err := os.WriteFile(filepath.Join(root, "warm", "check.py"), []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var logged testlog.Buffer
	srv, err := server.New(context.Background(), eng, server.Config{
		TenantDir: root, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 30, Snapshots: store,
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if n, err := srv.BuildSnapshots(context.Background()); n != 3 || err != nil {
		t.Fatalf("built %d snapshots: %v", n, err)
	}
	sets, _ := filepath.Glob(filepath.Join(store.Dir(), "*.snap.writes"))
	log := logged.String()
	if len(sets) != 1 {
		t.Fatalf("%d write sets after the build, want 1 (the warm tenant's):\n%s", len(sets), log)
	}
	for _, want := range []string{
		`msg="warm-up request recorded the snapshot's write set" tenant=warm path="/shop/ready?deep=1" status=200`,
		`msg="warm-up request answered an error; the first request records the write set" tenant=failing path=/ready status=500`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "\nwsgi_wasm_snapshots_ready 3\n") {
		t.Errorf("metrics after the build:\n%s", rec.Body.String())
	}

	// A burst of first requests to the tenant without a warm-up restores
	// one instance without the write set; it records it, all are answered.
	_, _, before := eng.RestoresWithoutWriteSet()
	codes := make(chan int, 8)
	for range cap(codes) {
		go func() {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/", nil)
			req.Host = "plain.test"
			srv.ServeHTTP(rec, req)
			codes <- rec.Code
		}()
	}
	for range cap(codes) {
		if code := <-codes; code != 200 {
			t.Errorf("a first request to plain.test answered %d", code)
		}
	}
	if _, _, after := eng.RestoresWithoutWriteSet(); after-before != 1 {
		t.Errorf("%d instances restored without the write set, want 1", after-before)
	}
	waitUntil(t, "the first request to record the write set", func() bool {
		sets, _ := filepath.Glob(filepath.Join(store.Dir(), "*.snap.writes"))
		return len(sets) == 2
	})
	rec = httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"\nwsgi_wasm_runs_without_write_set 0\n", "\nwsgi_wasm_runs_without_write_set_waiting 0\n",
		"\nwsgi_wasm_instances_restored_without_write_set_total "} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, rec.Body.String())
		}
	}
}
