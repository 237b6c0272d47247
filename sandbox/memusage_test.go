package sandbox_test

import (
	"context"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestRestoredInstancesShareTheImage: a restored instance's memory is
// mostly the snapshot's pages, shared; a fresh instance's is all its own.
func TestRestoredInstancesShareTheImage(t *testing.T) {
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	_, _, snap := snapshotOf(t, cfg)
	fresh, _ := newInstance(t, "snap:app")
	a, b := restore(t, cfg, snap), restore(t, cfg, snap)
	for _, inst := range []*sandbox.Instance{fresh, a, b} {
		fields(t, inst, "/")
	}
	uf, err := fresh.MemoryUsage()
	if err != nil {
		t.Fatal(err)
	}
	ua, err := a.MemoryUsage()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh: %+v", uf)
	t.Logf("restored: %+v", ua)
	if uf.Private < 4<<20 || uf.Private > uf.Size {
		t.Errorf("a fresh instance's private memory %d is implausible for its size %d", uf.Private, uf.Size)
	}
	if ua.Size != uf.Size && ua.Size < snap.MemorySize() {
		t.Errorf("restored memory size %d, snapshot %d", ua.Size, snap.MemorySize())
	}
	if ua.Private >= uf.Private || ua.PSS >= ua.RSS {
		t.Errorf("the restored instance does not share its image: %+v (fresh %+v)", ua, uf)
	}
	a.Close(context.Background())
	if _, err := a.MemoryUsage(); err == nil {
		t.Error("MemoryUsage of a closed instance did not fail")
	}
}

// TestPoolChargesWhatInstancesHold: the warm set's cost of a pool is the
// RAM its instances hold, so a pool of restored instances costs less than
// one of fresh instances, and neither is charged its whole linear memory.
func TestPoolChargesWhatInstancesHold(t *testing.T) {
	fresh, logs := newPool(t, "snap:app", pool.Config{MaxInstances: 1})
	if rec := get(fresh, logs, "/"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	restored, logs := newPool(t, "snap:app", pool.Config{MinWarm: 1, MaxInstances: 1, MaxRequests: 1, Snapshots: store})
	for i := 0; i < 2; i++ { // the fresh instance saves the snapshot; the next is restored
		if rec := get(restored, logs, "/"); rec.Code != 200 {
			t.Fatal(rec.Code)
		}
	}
	waitFor(t, "a restored instance idle", func() bool { s := restored.Stats(); return s.Idle == 1 && s.Restores == 2 })
	f, r := fresh.Memory(), restored.Memory()
	t.Logf("fresh pool %d bytes, restored pool %d bytes", f, r)
	if f < 4<<20 || f >= 20<<20 {
		t.Errorf("a fresh instance charged %d bytes: want its resident pages, under its 20 MiB of linear memory", f)
	}
	if r <= 0 || r >= f {
		t.Errorf("a restored instance charged %d bytes, a fresh one %d", r, f)
	}
}
