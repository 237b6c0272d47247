package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// bases lists the base image files in a store's folder.
func bases(t *testing.T, store *sandbox.SnapshotStore) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(store.Dir(), "base-*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTenantsShareABaseImage: two tenants' snapshots are made from one base
// image, leave its pages out of their files, and their restored instances
// each see their own arguments and environment, none of the other's.
func TestTenantsShareABaseImage(t *testing.T) {
	ctx := context.Background()
	eng := testEngine(t)
	store, err := sandbox.NewSnapshotStore(t.TempDir(), sandbox.WithSharedBase())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tenant := func(token string) sandbox.AppConfig {
		return sandbox.AppConfig{App: "process:app", Dir: "testdata/apps", Env: map[string]string{"TENANT_TOKEN": token}}
	}
	a, b := tenant("token-of-tenant-a"), tenant("token-of-tenant-b")
	keyA, err := store.Build(ctx, eng, a)
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := store.Build(ctx, eng, b)
	if err != nil {
		t.Fatal(err)
	}
	if keyA == keyB {
		t.Fatal("tenants with different environments got one snapshot key")
	}
	if got := bases(t, store); len(got) != 1 {
		t.Fatalf("base images: %v, want one shared by both tenants", got)
	}
	base, err := os.ReadFile(bases(t, store)[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(base, []byte("token-of-tenant")) || bytes.Contains(base, []byte("process:app")) {
		t.Error("the base image holds a tenant's environment or arguments")
	}

	bodies := map[string]string{}
	for _, tc := range []struct {
		cfg  sandbox.AppConfig
		key  string
		want string
	}{{a, keyA, "argv=process:app env=token-of-tenant-a envb=token-of-tenant-a"}, {b, keyB, "argv=process:app env=token-of-tenant-b envb=token-of-tenant-b"}} {
		snap, err := store.Open(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if snap.SharedBytes() == 0 || snap.SharedBytes() > snap.MemorySize() {
			t.Errorf("snapshot %s maps %d of %d bytes from the base image", tc.key, snap.SharedBytes(), snap.MemorySize())
		}
		st, err := os.Stat(snap.Path())
		if err != nil {
			t.Fatal(err)
		}
		if got := diskBytes(st); got >= int64(snap.MemorySize()-snap.SharedBytes())+1<<20 {
			t.Errorf("the snapshot file takes %d bytes on disk although %d of its %d are the base's", got, snap.SharedBytes(), snap.MemorySize())
		}
		body := strings.Join(fields(t, restore(t, tc.cfg, snap), "/"), " ")
		if !strings.HasPrefix(body, tc.want+" hash=") {
			t.Errorf("restored instance: %q, want %q", body, tc.want)
		}
		bodies[tc.key] = body
	}
	// The string-hash secret comes with the base image (ABI.md "Base images").
	hashOf := func(s string) string { _, h, _ := strings.Cut(s, "hash="); return h }
	if hashOf(bodies[keyA]) != hashOf(bodies[keyB]) {
		t.Errorf("tenants on one base hash strings differently: %q vs %q", bodies[keyA], bodies[keyB])
	}
}

// TestOwnImagesByDefault: without WithSharedBase, every tenant's snapshot
// is a whole image of its own, with its own string-hash secret.
func TestOwnImagesByDefault(t *testing.T) {
	ctx := context.Background()
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hashes := map[string]string{}
	for _, token := range []string{"a", "b"} {
		cfg := sandbox.AppConfig{App: "process:app", Dir: "testdata/apps", Env: map[string]string{"TENANT_TOKEN": token}}
		key, err := store.Build(ctx, testEngine(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := store.Open(key)
		if err != nil {
			t.Fatal(err)
		}
		if got := bases(t, store); len(got) != 0 || snap.SharedBytes() != 0 {
			t.Fatalf("base images %v, %d bytes shared; want none", got, snap.SharedBytes())
		}
		body := strings.Join(fields(t, restore(t, cfg, snap), "/"), " ")
		want := "argv=process:app env=" + token + " envb=" + token + " hash="
		if !strings.HasPrefix(body, want) {
			t.Errorf("restored instance: %q, want %q...", body, want)
		}
		_, hashes[token], _ = strings.Cut(body, "hash=")
	}
	if hashes["a"] == hashes["b"] {
		t.Errorf("two tenants' own images hash a string alike (%s): one string-hash secret for both", hashes["a"])
	}
}

// TestDamagedBaseImage: a tenant's snapshot whose base image is damaged or
// gone is refused and removed, and the next build makes both anew.
func TestDamagedBaseImage(t *testing.T) {
	ctx := context.Background()
	eng := testEngine(t)
	cfg := sandbox.AppConfig{App: "hello:hello", Dir: "testdata/apps"}
	for name, damage := range map[string]func(path string) error{
		"flipped": func(path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			return os.WriteFile(path, b, 0o600)
		},
		"removed": os.Remove,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			store, err := sandbox.NewSnapshotStore(dir, sandbox.WithSharedBase())
			if err != nil {
				t.Fatal(err)
			}
			key, err := store.Build(ctx, eng, cfg)
			if err != nil {
				t.Fatal(err)
			}
			store.Close()
			base := bases(t, store)
			if len(base) != 1 {
				t.Fatalf("base images: %v", base)
			}
			if err := damage(base[0]); err != nil {
				t.Fatal(err)
			}
			// A new store, as after a restart, finds the damage.
			store, err = sandbox.NewSnapshotStore(dir, sandbox.WithSharedBase())
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if _, err := store.Open(key); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
				t.Fatalf("Open with a %s base image: %v, want ErrSnapshotInvalid", name, err)
			}
			if _, err := os.Stat(store.Path(key)); err == nil {
				t.Error("the snapshot of a damaged base image was left in place")
			}
			if key2, err := store.Build(ctx, eng, cfg); err != nil || key2 != key {
				t.Fatalf("rebuild: %q %v", key2, err)
			}
			snap, err := store.Open(key)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(fields(t, restore(t, cfg, snap), "/x"), " "); got != "Hello, /x" {
				t.Errorf("rebuilt snapshot answers %q", got)
			}
		})
	}
}

// TestRetainKeepsTheBaseImage: removing tenants' old snapshots keeps the
// base image the kept ones are made from.
func TestRetainKeepsTheBaseImage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := sandbox.NewSnapshotStore(dir, sandbox.WithSharedBase())
	if err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.AppConfig{App: "hello:hello", Dir: "testdata/apps"}
	key, err := store.Build(ctx, testEngine(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	// A new store has opened neither file: the base is kept because the
	// kept snapshot's header names it.
	store, err = sandbox.NewSnapshotStore(dir, sandbox.WithSharedBase())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Retain(map[string]bool{key: true}); err != nil {
		t.Fatal(err)
	}
	if len(bases(t, store)) != 1 {
		t.Fatal("Retain removed the base image of a kept snapshot")
	}
	if _, err := store.Open(key); err != nil {
		t.Fatalf("Open after Retain: %v", err)
	}
}

// diskBytes is the room a file takes on disk: holes take none.
func diskBytes(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

// TestBaseSnapshotRebuiltWithoutSharedBase: a store without a shared base
// (the default) refuses and removes a snapshot made from one (as after
// serve ran with --snapshot-base, then without), so its tenant gets an
// image, and a string-hash secret, of its own; a store with a shared base
// keeps using a whole image.
func TestBaseSnapshotRebuiltWithoutSharedBase(t *testing.T) {
	ctx := context.Background()
	eng := testEngine(t)
	dir := t.TempDir()
	cfg := sandbox.AppConfig{App: "hello:hello", Dir: "testdata/apps"}
	shared, err := sandbox.NewSnapshotStore(dir, sandbox.WithSharedBase())
	if err != nil {
		t.Fatal(err)
	}
	key, err := shared.Build(ctx, eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	shared.Close()

	own, err := sandbox.NewSnapshotStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.Open(key); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
		t.Fatalf("Open of a snapshot made from a base, without one: %v, want ErrSnapshotInvalid", err)
	}
	if _, err := os.Stat(own.Path(key)); err == nil {
		t.Error("the snapshot made from a base image was left in place")
	}
	if _, err := own.Build(ctx, eng, cfg); err != nil {
		t.Fatal(err)
	}
	snap, err := own.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	if snap.SharedBytes() != 0 {
		t.Errorf("rebuilt snapshot maps %d bytes from a base image, want none", snap.SharedBytes())
	}
	own.Close()

	shared, err = sandbox.NewSnapshotStore(dir, sandbox.WithSharedBase())
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if snap, err := shared.Open(key); err != nil || snap.SharedBytes() != 0 {
		t.Fatalf("a whole image in a store with a shared base: %v", err)
	}
}

// TestAppExitingAtImportFromBase: an app whose import exits, started from a
// shared base image, fails with an InitError carrying the exit, and is not
// imported a second time from scratch.
func TestAppExitingAtImportFromBase(t *testing.T) {
	store, err := sandbox.NewSnapshotStore(t.TempDir(), sandbox.WithSharedBase())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var logs strings.Builder
	cfg := sandbox.AppConfig{App: "exitonimport:app", Dir: "testdata/apps", Log: func(_ slog.Level, msg []byte) { logs.Write(msg) }}
	inst, err := store.NewInstance(context.Background(), testEngine(t), cfg)
	if err == nil {
		inst.Close(context.Background())
		t.Fatal("an app that exits at import started")
	}
	var initErr *sandbox.InitError
	var exit *sandbox.ExitError
	if !errors.As(err, &initErr) || !errors.As(err, &exit) || exit.Code != 3 {
		t.Fatalf("err = %v, want an InitError wrapping exit code 3", err)
	}
	if strings.Contains(logs.String(), "base image not used") {
		t.Errorf("the import was tried again from scratch:\n%s", logs.String())
	}
}
