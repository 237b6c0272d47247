package sandbox_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// snapshotOf saves a fresh instance of cfg into a new store and opens it.
func snapshotOf(t *testing.T, cfg sandbox.AppConfig) (*sandbox.SnapshotStore, string, *sandbox.Snapshot) {
	t.Helper()
	return snapshotOn(t, testEngine(t), cfg)
}

// snapshotOn builds and opens cfg's snapshot with eng, in a store of its own.
func snapshotOn(t *testing.T, eng *sandbox.Engine, cfg sandbox.AppConfig) (*sandbox.SnapshotStore, string, *sandbox.Snapshot) {
	t.Helper()
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.Build(context.Background(), eng, cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	snap, err := store.Open(key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store, key, snap
}

func restore(t *testing.T, cfg sandbox.AppConfig, snap *sandbox.Snapshot) *sandbox.Instance {
	t.Helper()
	start := time.Now()
	inst, err := testEngine(t).Restore(context.Background(), cfg, snap)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restored in %v", time.Since(start))
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst
}

// fields serves GET path and returns the body split into fields.
func fields(t *testing.T, inst *sandbox.Instance, path string) []string {
	t.Helper()
	logs := &logLines{}
	rec, o := do(inst, httptest.NewRequest("GET", path, nil), logs)
	if o.Err != nil || rec.Code != 200 {
		t.Fatalf("GET %s: %d %+v\n%s", path, rec.Code, o, logs)
	}
	return strings.Fields(rec.Body.String())
}

func TestSnapshotRestoreKeepsStateAndReseeds(t *testing.T) {
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	_, _, snap := snapshotOf(t, cfg)
	fresh, _ := newInstance(t, "snap:app")
	time.Sleep(1100 * time.Millisecond) // the clock must have moved on since the snapshot
	a, b := restore(t, cfg, snap), restore(t, cfg, snap)

	fa, fb, ff := fields(t, a, "/a"), fields(t, b, "/b"), fields(t, fresh, "/f")
	// The token drawn at import is in the image: both restored instances
	// have the snapshotting instance's, which a fresh start does not repeat.
	if fa[0] != fb[0] {
		t.Errorf("import-time state differs between restored instances: %s vs %s", fa[0], fb[0])
	}
	if fa[0] == ff[0] {
		t.Errorf("a fresh instance drew the snapshot's import token %s", ff[0])
	}
	// Both generators, the module's and the app's own, were reseeded.
	if fa[1] == fb[1] || fa[2] == fb[2] {
		t.Errorf("restored instances drew the same numbers: %v vs %v", fa, fb)
	}
	// Globals carry on from the image, and each instance has its own.
	if fa[3] != "1" || fb[3] != "1" || fields(t, a, "/x")[3] != "2" || fields(t, b, "/y")[3] != "2" {
		t.Errorf("request counters: want each instance to count from 1 on its own")
	}
	if fa[4] != "/a" || fb[4] != "/b" {
		t.Errorf("responses: %v %v", fa, fb)
	}
	// The wall clock is the host's now, not the snapshot's.
	if now := time.Now().Unix(); fa[5] != strconv.FormatInt(now, 10) && fa[5] != strconv.FormatInt(now-1, 10) {
		t.Errorf("restored instance's time.time() is %s, the host's %d", fa[5], now)
	}
}

func TestSnapshotRejectsDamage(t *testing.T) {
	cfg := sandbox.AppConfig{App: "hello:hello", Dir: "testdata/apps"}
	store, key, _ := snapshotOf(t, cfg)
	store.Close()
	good, err := os.ReadFile(store.Path(key))
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string]func([]byte) []byte{
		"memory byte flipped": func(b []byte) []byte { b[len(b)-len(b)/3] ^= 1; return b },
		"global flipped":      func(b []byte) []byte { b[56] ^= 1; return b },
		"truncated":           func(b []byte) []byte { return b[:len(b)-4096] },
		"empty":               func(b []byte) []byte { return nil },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			bad := f(append([]byte(nil), good...))
			if err := os.WriteFile(store.Path(key), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Open(key); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
				t.Fatalf("Open of a damaged file: %v, want ErrSnapshotInvalid", err)
			}
			if _, err := os.Stat(store.Path(key)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the damaged file was not removed: %v", err)
			}
		})
	}
	// A file made for another key is refused too.
	if err := os.WriteFile(store.Path("other"), good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open("other"); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
		t.Errorf("Open under another key: %v, want ErrSnapshotInvalid", err)
	}
}

func TestSnapshotKeyFollowsTheApp(t *testing.T) {
	eng := testEngine(t)
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/apps/hello.py")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "hello.py")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.AppConfig{App: "hello:hello", Dir: dir, Env: map[string]string{"A": "1"}}
	key := func(c sandbox.AppConfig) string {
		k, err := eng.SnapshotKey(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key(cfg)
	if key(cfg) != base {
		t.Fatal("the key is not stable")
	}
	changed := map[string]sandbox.AppConfig{}
	c := cfg
	c.Env = map[string]string{"A": "2"}
	changed["env"] = c
	c = cfg
	c.App = "hello:hello_validated"
	changed["app"] = c
	c = cfg
	c.DataDir = t.TempDir()
	changed["data folder"] = c
	twin := t.TempDir() // the same file, same size and time, in another folder
	if err := os.WriteFile(filepath.Join(twin, "hello.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(file)
	os.Chtimes(filepath.Join(twin, "hello.py"), st.ModTime(), st.ModTime())
	c = cfg
	c.Dir = twin
	changed["folder (a twin of the same files)"] = c
	for what, c := range changed {
		if key(c) == base {
			t.Errorf("changing the %s kept the key", what)
		}
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	if key(cfg) == base {
		t.Error("editing a file of the app kept the key")
	}
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if key(cfg) == base {
		t.Error("adding a file to the app kept the key")
	}
}

func TestSnapshotRefusedWhenAFileIsOpen(t *testing.T) {
	for app, says := range map[string]string{
		"keepsfile:app": "'/app/keepsfile.py' is open", // a file object: named
		"keepsfd:app":   "file descriptor",             // a bare descriptor: by number
	} {
		t.Run(app, func(t *testing.T) {
			logs := &logLines{}
			cfg := sandbox.AppConfig{App: app, Dir: "testdata/apps", Log: logs.log}
			store, err := sandbox.NewSnapshotStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.Build(context.Background(), testEngine(t), cfg); err == nil {
				t.Fatal("an app holding an open file was snapshotted")
			}
			if !strings.Contains(logs.String(), says) {
				t.Errorf("the log does not say %q:\n%s", says, logs)
			}
			if entries, _ := os.ReadDir(store.Dir()); len(entries) != 0 {
				t.Errorf("left in the store: %v", entries)
			}
		})
	}
}

// TestSnapshotAfterEntryPoints: importlib.metadata's caches hold the
// stdlib zip open after entry_points(); the snapshot empties them and is
// taken, and the restored instance reads its metadata again.
func TestSnapshotAfterEntryPoints(t *testing.T) {
	logs := &logLines{}
	cfg := sandbox.AppConfig{App: "metadata:app", Dir: "testdata/apps", Log: logs.log}
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eng := testEngine(t)
	key, err := store.Build(context.Background(), eng, cfg)
	if err != nil {
		t.Fatalf("not snapshotted: %v\n%s", err, logs)
	}
	snap, err := store.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := eng.Restore(context.Background(), cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	if rec, _ := do(inst, httptest.NewRequest("GET", "/", nil), logs); rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "[") {
		t.Fatalf("restored: %d %q\n%s", rec.Code, rec.Body, logs)
	}
}

// TestPoolRestoresFromItsSnapshot: the first instance starts fresh and
// saves the snapshot; the instances that replace it are restored; a
// damaged snapshot is replaced by a new one; an app that cannot be
// snapshotted still serves, fresh.
func TestPoolRestoresFromItsSnapshot(t *testing.T) {
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serve := func(app string, n int) pool.Stats {
		p, logs := newPool(t, app, pool.Config{MaxInstances: 1, MaxRequests: 1, Snapshots: store})
		for i := 0; i < n; i++ {
			if rec := get(p, logs, "/"); rec.Code != 200 {
				t.Fatalf("%s request %d: %d %s\n%s", app, i, rec.Code, rec.Body, logs)
			}
		}
		p.Close()
		return p.Stats()
	}
	if s := serve("snap:app", 4); s.ColdStarts != 4 || s.Restores != 3 {
		t.Errorf("first pool: %+v, want 4 instances, 3 of them restored", s)
	}
	if s := serve("snap:app", 2); s.Restores != 2 {
		t.Errorf("a new pool of the same app: %+v, want both instances restored", s)
	}
	key, err := testEngine(t).SnapshotKey(context.Background(), sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(store.Path(key))
	if err != nil {
		t.Fatalf("the pool's snapshot is not where SnapshotKey says: %v", err)
	}
	b[len(b)-1] ^= 0xff
	store.Close() // forget the verified copy: the next pool opens the file again
	if err := os.WriteFile(store.Path(key), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := serve("snap:app", 3); s.Restores != 2 {
		t.Errorf("after damage: %+v, want one fresh instance that saves a new snapshot, then 2 restored", s)
	}
	if _, err := store.Open(key); err != nil {
		t.Errorf("the damaged snapshot was not replaced: %v", err)
	}
	if s := serve("keepsfile:app", 2); s.ColdStarts != 2 || s.Restores != 0 {
		t.Errorf("app that cannot be snapshotted: %+v, want 2 fresh instances", s)
	}
}

// TestSnapshotMappingsAnswerAlike restores under each way of getting the
// image into memory; all must give an instance that serves, with the
// snapshot's state.
func TestSnapshotMappingsAnswerAlike(t *testing.T) {
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	_, _, snap := snapshotOf(t, cfg)
	var token string
	for _, mode := range []sandbox.SnapshotMapping{sandbox.MapPrivate, sandbox.MapPrivatePopulate, sandbox.CopyImage} {
		t.Run(mode.String(), func(t *testing.T) {
			eng, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: testinterp.Require(t), SnapshotMapping: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close(context.Background())
			inst, err := eng.Restore(context.Background(), cfg, snap)
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Close(context.Background())
			f := fields(t, inst, "/m")
			if token == "" {
				token = f[0]
			}
			if f[0] != token || f[3] != "1" || f[4] != "/m" {
				t.Errorf("%v, want the snapshot's token %s, count 1 and /m", f, token)
			}
		})
	}
}

// TestRestoreFromClosedSnapshot: a snapshot the store closed meanwhile (a
// reload retired it, a newer save replaced it) is never mapped through its
// old descriptor, which may name another file by then: the restore says
// ErrSnapshotClosed, and the pool starts fresh without discarding the key.
func TestRestoreFromClosedSnapshot(t *testing.T) {
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	store, _, snap := snapshotOf(t, cfg)
	store.Close()
	// Whatever opens next may take the closed descriptor's number.
	other, err := os.Open("testdata/apps/snap.py")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	inst, err := testEngine(t).Restore(context.Background(), cfg, snap)
	if err == nil {
		inst.Close(context.Background())
		t.Fatal("restored from a closed snapshot")
	}
	if !errors.Is(err, sandbox.ErrSnapshotClosed) {
		t.Fatalf("Restore from a closed snapshot: %v, want ErrSnapshotClosed", err)
	}
}
