package sandbox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// An instance restored without its snapshot's write set takes a
// copy-on-write fault, with a TLB shootdown on every thread of the process,
// for each page its guest writes, until its first request is done. Many of
// them at once (a burst of first requests right after a deploy) spend the
// CPU in the kernel and answer in seconds (README.md "Snapshots", write
// sets). So the engine lets at most Options.MaxRunsWithoutWriteSet of them
// run guest code at once, the restore and then the first request each
// (coldGate), and a restore of a snapshot whose write set is being recorded
// waits for it (recording) rather than take the faults too.

// coldGate is a counting semaphore whose waiters are served in arrival
// order and give up when their context ends.
type coldGate struct {
	mu      sync.Mutex
	max     int
	running int
	peak    int             // the most running at once, for tests
	queue   []chan struct{} // waiters, oldest first; closed when granted a slot
}

func newColdGate(max int) *coldGate { return &coldGate{max: max} }

// acquire takes a slot, waiting in line until ctx ends at the latest; the
// caller calls release once.
func (g *coldGate) acquire(ctx context.Context) (release func(), err error) {
	g.mu.Lock()
	if g.running < g.max && len(g.queue) == 0 {
		g.running++
		g.peak = max(g.peak, g.running)
		g.mu.Unlock()
		return g.releaseOnce(), nil
	}
	ch := make(chan struct{})
	g.queue = append(g.queue, ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return g.releaseOnce(), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	for i, c := range g.queue {
		if c == ch {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			g.mu.Unlock()
			return nil, context.Cause(ctx)
		}
	}
	g.mu.Unlock()
	// Granted as ctx ended: pass the slot on.
	g.release()
	return nil, context.Cause(ctx)
}

func (g *coldGate) releaseOnce() func() {
	var once sync.Once
	return func() { once.Do(g.release) }
}

// release hands the slot to the oldest waiter, or frees it.
func (g *coldGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) > 0 {
		close(g.queue[0])
		g.queue = g.queue[1:]
		g.peak = max(g.peak, g.running)
		return
	}
	g.running--
}

// counts returns the slots in use, the waiters and the most slots ever in
// use at once.
func (g *coldGate) counts() (running, waiting, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, len(g.queue), g.peak
}

// RestoresWithoutWriteSet reports how many restores and first requests of
// instances restored without a write set run now (at most
// Options.MaxRunsWithoutWriteSet), how many wait for their turn, and how
// many instances were restored without one so far.
func (e *Engine) RestoresWithoutWriteSet() (running, waiting int, total int64) {
	running, waiting, _ = e.gate.counts()
	return running, waiting, e.restoredCold.Load()
}

// A restore of a snapshot without a write set while another instance of it
// records one (restoring, or serving its first request) waits for the set,
// at most recordingWait; it stops waiting once that instance has stood idle
// (restored and not serving, or served and not recording) for idleGrace: a
// warm instance nobody asks for yet, or a caller that does not record.
const (
	recordingWait = 10 * time.Second
	idleGrace     = 250 * time.Millisecond
)

// recording is the instance that records its snapshot's write set, as seen
// by the restores that wait for it.
type recording struct {
	done      chan struct{} // closed once it recorded the set, or gave up
	once      sync.Once
	idleSince atomic.Int64 // UnixNano since it stands idle; 0 while it restores or serves
}

func (r *recording) finish() { r.once.Do(func() { close(r.done) }) }

func (r *recording) idle(idle bool) {
	if idle {
		r.idleSince.Store(time.Now().UnixNano())
	} else {
		r.idleSince.Store(0)
	}
}

// wait returns once r is done, has stood idle for idleGrace, or after
// recordingWait; with ctx's cause if ctx ends first.
func (r *recording) wait(ctx context.Context) error {
	timeout := time.NewTimer(recordingWait)
	defer timeout.Stop()
	tick := time.NewTicker(idleGrace / 5)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			return nil
		case <-timeout.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
			if t := r.idleSince.Load(); t != 0 && time.Since(time.Unix(0, t)) >= idleGrace {
				return nil
			}
		}
	}
}

// claimRecording makes the caller the snapshot's recorder (mine), unless
// another one is in flight, which it returns.
func (s *Snapshot) claimRecording() (r *recording, mine bool) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if s.rec != nil {
		select {
		case <-s.rec.done:
		default:
			return s.rec, false
		}
	}
	s.rec = &recording{done: make(chan struct{})}
	return s.rec, true
}
