package sandbox

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitCounts polls until the gate has running and waiting as given.
func waitCounts(t *testing.T, g *coldGate, running, waiting int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, w, _ := g.counts()
		if r == running && w == waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gate has %d running, %d waiting; want %d, %d", r, w, running, waiting)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestColdGateBoundsAndOrder: at most max hold a slot; the others get one
// in the order they came, as slots are released.
func TestColdGateBoundsAndOrder(t *testing.T) {
	g := newColdGate(2)
	var held []func()
	for range 2 {
		release, err := g.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	const waiters = 5
	granted := make(chan int, waiters)
	for i := range waiters {
		go func() {
			release, err := g.acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			granted <- i
			release()
		}()
		waitCounts(t, g, 2, i+1) // queued in this order
	}
	held[0]()
	held[0]() // a second call is a no-op
	for want := range waiters {
		if got := <-granted; got != want {
			t.Fatalf("waiter %d got a slot before waiter %d", got, want)
		}
	}
	held[1]()
	waitCounts(t, g, 0, 0)
	if _, _, peak := g.counts(); peak != 2 {
		t.Errorf("peak %d slots in use, want 2", peak)
	}
}

// TestColdGateWaitEndsWithContext: a waiter whose context ends returns at
// once with its cause and leaves the line; the slot it did not get goes to
// the next.
func TestColdGateWaitEndsWithContext(t *testing.T) {
	g := newColdGate(1)
	release, err := g.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := g.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire past its deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("acquire returned %v after its 50ms deadline", d)
	}
	waitCounts(t, g, 1, 0)
	release()
	waitCounts(t, g, 0, 0)
	// Granted as its context ends: the slot is passed on, not lost.
	for range 100 {
		hold, _ := g.acquire(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			if r, err := g.acquire(ctx); err == nil {
				r()
			}
			close(done)
		}()
		waitCounts(t, g, 1, 1)
		go cancel()
		hold()
		<-done
		waitCounts(t, g, 0, 0)
	}
}

// TestRecordingWait: a restore waiting for the recorder of its snapshot's
// write set goes on when it is done, when it stands idle, or when its own
// context ends, promptly.
func TestRecordingWait(t *testing.T) {
	s := &Snapshot{}
	rec, mine := s.claimRecording()
	if !mine {
		t.Fatal("the first claim is not the recorder")
	}
	if r, mine := s.claimRecording(); mine || r != rec {
		t.Fatal("a second claim became the recorder while one is in flight")
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	if err := rec.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with its context canceled: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("wait returned %v after its context was canceled", d)
	}

	rec.idle(true)
	start = time.Now()
	if err := rec.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < idleGrace/2 || d > idleGrace+2*time.Second {
		t.Errorf("wait for an idle recorder took %v, want about %v", d, idleGrace)
	}

	rec.idle(false)
	go func() { time.Sleep(20 * time.Millisecond); rec.finish() }()
	start = time.Now()
	if err := rec.wait(context.Background()); err != nil || time.Since(start) > time.Second {
		t.Fatalf("wait for a recorder that finished: %v after %v", err, time.Since(start))
	}
	if _, mine := s.claimRecording(); !mine {
		t.Error("a claim after the recorder finished did not become the recorder")
	}
}
