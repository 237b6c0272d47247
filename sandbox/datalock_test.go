package sandbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestLockDataAcrossEngines: the data folder's lock holds across engines
// (as across processes: it is an flock on the folder): a second engine
// waits until the first unlocks, or until its context ends.
func TestLockDataAcrossEngines(t *testing.T) {
	in := testinterp.Require(t)
	other, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: in})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	dir := t.TempDir()
	unlock, err := testEngine(t).LockData(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := other.LockData(ctx, dir); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the other engine took a held lock: %v", err)
	}
	time.AfterFunc(200*time.Millisecond, unlock)
	start := time.Now()
	unlock2, err := other.LockData(context.Background(), dir)
	if err != nil || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("after %v: %v; want the lock once the first engine unlocked", time.Since(start), err)
	}
	unlock2()
	// Unlocked, the first engine takes it again (the bound is for a
	// loaded machine).
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unlock, err = testEngine(t).LockData(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}
