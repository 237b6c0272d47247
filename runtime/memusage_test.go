package runtime_test

import (
	"context"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/runtime"
)

// TestRestoredInstancesShareTheImage: a restored instance's memory is
// mostly the snapshot's pages, shared; a fresh instance's is all its own.
func TestRestoredInstancesShareTheImage(t *testing.T) {
	cfg := runtime.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	_, _, snap := snapshotOf(t, cfg)
	fresh, _ := newInstance(t, "snap:app")
	a, b := restore(t, cfg, snap), restore(t, cfg, snap)
	for _, inst := range []*runtime.Instance{fresh, a, b} {
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
