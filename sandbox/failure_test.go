package sandbox_test

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestGuestTrapAndExitAre502 checks the two ways a guest dies outside
// Python's control: a trap (C stack overflow) and proc_exit (os._exit). Both
// answer 502, break the instance, and the pool serves the next request with
// a fresh one.
func TestGuestTrapAndExitAre502(t *testing.T) {
	for _, app := range []string{"hello:overflow", "hello:hard_exit"} {
		t.Run(app, func(t *testing.T) {
			inst, logs := newInstance(t, app)
			rec := httptest.NewRecorder()
			o := pool.ServeInstance(inst, rec, httptest.NewRequest("GET", "/", nil), pool.RequestInfo{}, logs.log)
			if rec.Code != 502 || o.Err == nil || !inst.Broken() {
				t.Fatalf("status %d, outcome %+v, broken %v", rec.Code, o, inst.Broken())
			}
			var exit *sandbox.ExitError
			if app == "hello:hard_exit" && (!errors.As(o.Err, &exit) || exit.Code != 9) {
				t.Fatalf("want ExitError 9, got %v", o.Err)
			}
			p, logs := newPool(t, app, pool.Config{MaxInstances: 1})
			for i := 0; i < 2; i++ {
				if rec := get(p, logs, "/"); rec.Code != 502 {
					t.Fatalf("request %d: %d", i, rec.Code)
				}
			}
			if s := p.Stats(); s.Traps != 2 || s.ColdStarts != 2 {
				t.Fatalf("each failure should cost one instance: %+v", s)
			}
		})
	}
}

// TestHashSeedPerInstance: str hashes differ between instances (a fresh
// string-hash secret each), so one tenant cannot precompute collisions
// that work on every instance.
func TestHashSeedPerInstance(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		inst, logs := newInstance(t, "hello:hash_seed")
		rec, _ := do(inst, httptest.NewRequest("GET", "/", nil), logs)
		seen[rec.Body.String()] = true
	}
	if len(seen) != 3 {
		t.Fatalf("3 instances gave %d distinct hashes", len(seen))
	}
}
