package sandbox_test

import (
	"os"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestWriteSetRecordedKeptAndPrefetched: the first restored instance
// records the pages its first request wrote; the set is kept beside the
// snapshot, read back by another store, and copied into later restores
// before they serve, which answer as before.
func TestWriteSetRecordedKeptAndPrefetched(t *testing.T) {
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	store, key, snap := snapshotOf(t, cfg)
	writes := store.Path(key) + ".writes"

	first := restore(t, cfg, snap)
	before, err := first.MemoryUsage()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.RecordWriteSet(); err != nil || snap.WriteSetPages() != 0 {
		t.Fatalf("recorded before any request: %v, %d pages", err, snap.WriteSetPages())
	}
	want := fields(t, first, "/a")
	if err := first.RecordWriteSet(); err != nil {
		t.Fatal(err)
	}
	pages := snap.WriteSetPages()
	if pages == 0 {
		t.Fatal("no write set recorded after the first request")
	}
	if _, err := os.Stat(writes); err != nil {
		t.Fatalf("write set not kept beside the snapshot: %v", err)
	}
	t.Logf("write set: %d pages; private before serving without it: %d bytes", pages, before.Private)

	// Another store (a restarted server) reads the set back.
	store.Close()
	store2, err := sandbox.NewSnapshotStore(store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store2.Close() })
	snap2, err := store2.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap2.WriteSetPages(); got != pages {
		t.Fatalf("write set read back with %d pages, recorded %d", got, pages)
	}
	second := restore(t, cfg, snap2)
	u, err := second.MemoryUsage()
	if err != nil {
		t.Fatal(err)
	}
	if min := uint64(pages * os.Getpagesize()); u.Private < min || u.Private <= before.Private {
		t.Errorf("restored with the write set: %d private bytes before serving, want at least its %d (and more than %d without)",
			u.Private, min, before.Private)
	}
	got := fields(t, second, "/a")
	if got[0] != want[0] || got[3] != want[3] || got[4] != want[4] {
		t.Errorf("with the write set the instance answers %v, without %v", got, want)
	}
	if got[1] == want[1] {
		t.Errorf("restores drew the same random number %s", got[1])
	}

	// A damaged set is ignored and removed; the restore still works.
	b, err := os.ReadFile(writes)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(writes, b, 0o600); err != nil {
		t.Fatal(err)
	}
	store2.Close()
	snap3, err := store2.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	if snap3.WriteSetPages() != 0 {
		t.Error("a damaged write set was used")
	}
	if _, err := os.Stat(writes); !os.IsNotExist(err) {
		t.Errorf("a damaged write set was kept: %v", err)
	}
	fields(t, restore(t, cfg, snap3), "/c")

	// Dropping the snapshot drops its write set.
	third := restore(t, cfg, snap3)
	fields(t, third, "/d")
	if err := third.RecordWriteSet(); err != nil {
		t.Fatal(err)
	}
	if err := store2.Retain(nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{store.Path(key), writes} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("Retain left %s: %v", p, err)
		}
	}
}
