package pool

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// WarmUp records the write set of key's snapshot in store from a request
// the tenant chose for it (tenant.toml's warmup), so that the first real
// request after a build restores as fast as later ones: it restores an
// instance, serves r with it, records the pages it wrote if the app
// answered below 400, and closes it. It returns the app's status, or 0 and
// no error when there is nothing to do (the snapshot has a write set, or
// the engine maps snapshots in a mode without one).
func WarmUp(ctx context.Context, e *sandbox.Engine, store *sandbox.SnapshotStore, cfg sandbox.AppConfig, key string, r *http.Request, info RequestInfo) (int, error) {
	snap, err := store.Open(key)
	if err != nil {
		return 0, err
	}
	if snap.HasWriteSet() || !e.RecordsWriteSets() {
		return 0, nil
	}
	inst, err := e.Restore(ctx, cfg, snap)
	if err != nil {
		return 0, err
	}
	defer inst.Close(ctx)
	rec := httptest.NewRecorder()
	if o := ServeInstance(inst, rec, r.WithContext(ctx), info, cfg.Log); o.Err != nil {
		return rec.Code, fmt.Errorf("pool: warm-up request: %w", o.Err)
	}
	if rec.Code >= 400 {
		return rec.Code, nil
	}
	return rec.Code, inst.RecordWriteSet()
}
