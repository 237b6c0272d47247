package sandbox_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// firstRequest restores an instance of cfg from snap, serves its first
// request, records the write set as a pool does, and closes it.
func firstRequest(e *sandbox.Engine, cfg sandbox.AppConfig, snap *sandbox.Snapshot) error {
	inst, err := e.Restore(context.Background(), cfg, snap)
	if err != nil {
		return err
	}
	defer inst.Close(context.Background())
	logs := &logLines{}
	rec, o := do(inst, httptest.NewRequest("GET", "/", nil), logs)
	if o.Err != nil || rec.Code != 200 {
		return errors.New(rec.Body.String() + logs.String())
	}
	return inst.RecordWriteSet()
}

// TestConcurrentFirstRestoresRecordOneWriteSet: restores of one snapshot
// that start together while it has no write set wait for the one that
// records it and restore with it: one instance takes the faults, all serve.
func TestConcurrentFirstRestoresRecordOneWriteSet(t *testing.T) {
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	_, _, snap := snapshotOf(t, cfg)
	e := testEngine(t)
	_, _, before := e.RestoresWithoutWriteSet()
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- firstRequest(e, cfg, snap)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	_, _, after := e.RestoresWithoutWriteSet()
	if after-before != 1 {
		t.Errorf("%d of %d concurrent first restores ran without the write set, want 1", after-before, n)
	}
	if snap.WriteSetPages() == 0 {
		t.Error("no write set recorded")
	}
}

// TestRestoresWithoutWriteSetTakeTurns: restores of different snapshots
// without a write set, and their first requests, run at most
// MaxRunsWithoutWriteSet at once; all serve.
func TestRestoresWithoutWriteSetTakeTurns(t *testing.T) {
	e, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: testinterp.Require(t), MaxRunsWithoutWriteSet: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	cfg := sandbox.AppConfig{App: "snap:app", Dir: "testdata/apps"}
	const n = 4
	snaps := make([]*sandbox.Snapshot, n)
	for i := range snaps {
		_, _, snaps[i] = snapshotOn(t, e, cfg)
	}
	errs := make(chan error, n)
	for _, snap := range snaps {
		go func() { errs <- firstRequest(e, cfg, snap) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, _, total := e.RestoresWithoutWriteSet(); total != n {
		t.Errorf("%d restores without a write set, want %d", total, n)
	}
	if peak := e.PeakRunsWithoutWriteSet(); peak != 1 {
		t.Errorf("%d restores or first requests without a write set ran at once, want at most 1", peak)
	}
}

// TestFirstRequestWaitingForTurnEndsWithDeadline: a first request without
// a write set that waits for its turn past its deadline fails at once with
// ErrDeadline.
func TestFirstRequestWaitingForTurnEndsWithDeadline(t *testing.T) {
	e, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: testinterp.Require(t), MaxRunsWithoutWriteSet: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	var insts []*sandbox.Instance
	for _, app := range []string{"runaway:sleeper", "runaway:quick"} {
		cfg := sandbox.AppConfig{App: app, Dir: "testdata/apps"}
		_, _, snap := snapshotOn(t, e, cfg)
		inst, err := e.Restore(context.Background(), cfg, snap)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close(context.Background()) })
		insts = append(insts, inst)
	}
	slow, waiting := insts[0], insts[1]
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		do(slow, httptest.NewRequest("GET", "/", nil).WithContext(ctx), &logLines{})
	}()
	for {
		if r, _, _ := e.RestoresWithoutWriteSet(); r == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, o := do(waiting, httptest.NewRequest("GET", "/", nil).WithContext(ctx), &logLines{})
	if !errors.Is(o.Err, sandbox.ErrDeadline) {
		t.Errorf("first request waiting past its deadline: %v, want ErrDeadline", o.Err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("it returned after %v, its deadline was 100ms", d)
	}
	<-done
}
