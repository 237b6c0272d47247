package pool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// Config sizes one tenant's pool. Zero values take the defaults noted.
type Config struct {
	// MinWarm instances are kept initialised and idle, made in the
	// background so that cold starts stay out of the request path.
	MinWarm int
	// MaxInstances bounds the instances alive at once (default 4).
	MaxInstances int
	// MaxRequests replaces an instance after this many requests, plus up to
	// MaxRequestsJitter more, as gunicorn's max_requests (0: never).
	MaxRequests, MaxRequestsJitter int
	// QueueLength bounds the requests waiting for an instance; more get 503
	// with Retry-After (0: the default 64; NoQueue: none wait).
	QueueLength int
	// IdleTimeout closes instances idle this long beyond MinWarm (default 5m).
	IdleTimeout time.Duration
	// RequestTimeout is each request's deadline in the guest (default 30s);
	// it includes the wait for an instance.
	RequestTimeout time.Duration
	// InitTimeout bounds starting an instance: the interpreter and the app's
	// import (default 60s). An app that takes longer is reported as failed.
	InitTimeout time.Duration
	// Snapshots, if set, holds snapshots of initialised instances: the pool
	// restores its instances from its app's snapshot, and when there is none
	// yet, saves one from its first fresh instance (ABI.md "Snapshots").
	Snapshots *sandbox.SnapshotStore
	// SnapshotKey is sandbox.Engine.SnapshotKey of the app, if the caller has it;
	// otherwise the pool computes it when it first starts an instance.
	SnapshotKey string
	// Log receives the pool's own records (an instance that failed to
	// start, snapshots saved or refused); nil: the engine's logger, with
	// app=.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxInstances <= 0 {
		c.MaxInstances = 4
	}
	if c.MinWarm > c.MaxInstances {
		c.MinWarm = c.MaxInstances
	}
	if c.QueueLength == 0 {
		c.QueueLength = 64
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.InitTimeout <= 0 {
		c.InitTimeout = time.Minute
	}
	return c
}

// A pool whose app failed to start answers 503 for initRetryDelay before
// trying again, and for twice as long after each further failure in a row,
// up to maxInitRetryDelay: an app that cannot import costs one attempt per
// interval, not one per request. A success, or a reload (a new pool), starts
// over.
const (
	initRetryDelay    = 5 * time.Second
	maxInitRetryDelay = 5 * time.Minute
)

// initBackoff is the wait after the nth failed start in a row (n >= 1).
func initBackoff(n int) time.Duration {
	d := initRetryDelay
	for i := 1; i < n && d < maxInitRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxInitRetryDelay)
}

// NoQueue as Config.QueueLength lets no request wait for an instance.
const NoQueue = -1

// Pool hands out initialised instances of one app, one request at a time
// each. It never hands out a broken instance: one that trapped, exited,
// passed its deadline or asked to be replaced is closed on release.
type Pool struct {
	engine *sandbox.Engine
	app    sandbox.AppConfig
	cfg    Config
	log    *slog.Logger

	mu       sync.Mutex
	idle     []*pooled // LIFO: the most recently used is warmest
	live     int       // idle + busy + being created
	creating int
	settling int // served their first request, being measured before reuse
	waiters  []chan *pooled
	state    state
	initErr  error // last failed init, reported to waiters when nothing is alive
	initAt   time.Time
	initFail int       // failed starts in a row (see initBackoff)
	initLog  time.Time // when a refusal in the back-off was last logged

	// WarmSet bookkeeping: the requests holding the pool (see state).
	holds         int
	unheld        sync.Cond // signalled when holds drops to 0 and on Close; L is &mu
	closerRunning bool      // a goroutine is in closeWhenUnheld

	all      map[*pooled]struct{} // every live instance, for Memory
	key      string               // the WarmSet key, if any
	lastCost int64                // the cost last given to the WarmSet
	lastUsed uint64               // when the WarmSet last gave it out, in its ticks (WarmSet.mu)

	stats   Stats
	stop    chan struct{}
	stopped sync.WaitGroup

	snapMu    sync.Mutex // guards the fields below; held while opening or saving
	snapState snapState
	snapKey   string
	snap      *sandbox.Snapshot
}

// state is where a pool is in its life. A pool serves until it is closed;
// one in a WarmSet may be let go first (evicted or refused by ristretto, or
// removed) and then lingers: it keeps serving the requests that hold it (in
// flight or queued), and a request for its tenant revives it (takes it back
// into the set, held) rather than start a pool of its own, so its limits
// hold across the set's refusals. Once no request holds a lingering pool,
// it is closing: no longer revivable, its instances close, and its
// tenant's next request starts cold.
//
//	serving --let go--> lingering --revived--> serving
//	lingering --no holds left--> closing --> closed
//	any --Close--> closed
type state int

const (
	serving   state = iota // alone, or kept by a warm set
	lingering              // let go by its warm set, held or revivable
	closing                // let go and unheld: being closed
	closed
)

// snapState is where a pool is with its app's snapshot.
type snapState int

const (
	snapUnknown  snapState = iota // not looked for yet
	snapMissing                   // none on disk: the next fresh instance saves one
	snapSaving                    // a fresh instance is saving it now
	snapReady                     // p.snap is open
	snapDisabled                  // no store, or the app cannot be snapshotted
)

// Stats counts what a pool did. ColdStarts counts every instance
// started, Restores those of them restored from a snapshot.
type Stats struct {
	ColdStarts, Restores, Replaced, Rejected, Traps, Timeouts int64
	Idle, Busy                                                int
}

type pooled struct {
	inst     *sandbox.Instance
	served   int
	limit    int // replace after this many requests; 0 = never
	lastUsed time.Time
}

// New starts a pool of app's instances on e and begins warming MinWarm
// of them.
func New(e *sandbox.Engine, app sandbox.AppConfig, cfg Config) *Pool {
	log := cfg.Log
	if log == nil {
		log = e.Logger()
	}
	p := &Pool{engine: e, app: app, cfg: cfg.withDefaults(), log: log.With("app", app.App),
		stop: make(chan struct{}), all: map[*pooled]struct{}{}}
	p.unheld.L = &p.mu
	p.mu.Lock()
	p.warmLocked()
	p.mu.Unlock()
	p.stopped.Add(1)
	go p.reapLoop()
	return p
}

// Stats returns a snapshot of the counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Idle = len(p.idle)
	s.Busy = p.live - len(p.idle) - p.creating
	return s
}

// Memory is the RAM the pool's live instances hold, in bytes: each one's
// private pages, plus the pages of the app's snapshot they read, which they
// share and are counted once (the most any instance maps). It is what the
// warm set charges the pool. The base image's pages are not the tenant's:
// every tenant shares them, so they are charged to none.
func (p *Pool) Memory() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var private, shared uint64
	for pi := range p.all {
		r := pi.inst.Resident()
		private += r.Private
		shared = max(shared, r.Shared)
	}
	return int64(private + shared)
}

// charged is the cost last given to the WarmSet.
func (p *Pool) charged() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastCost
}

// costChanged records cost and reports whether it moved by more than a
// tenth since last recorded.
func (p *Pool) costChanged(cost int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := cost - p.lastCost; d > p.lastCost/10 || -d > p.lastCost/10 {
		p.lastCost = cost
		return true
	}
	return false
}

// warmLocked starts background creation up to MinWarm idle instances.
func (p *Pool) warmLocked() {
	for p.state != closed && len(p.idle)+p.creating+p.settling < p.cfg.MinWarm+len(p.waiters) && p.live < p.cfg.MaxInstances {
		p.live++
		p.creating++
		p.stopped.Add(1)
		go p.create()
	}
}

func (p *Pool) create() {
	defer p.stopped.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.InitTimeout)
	inst, restored, err := p.startInstance(ctx)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.creating--
	if err != nil {
		p.live--
		p.initErr, p.initAt = err, time.Now()
		p.initFail++
		p.log.Error("instance failed to start", "err", err, "failures_in_a_row", p.initFail, "retry_in", initBackoff(p.initFail).String())
		// Nothing alive can serve the waiters: fail them rather than hang.
		if p.live == 0 {
			for _, w := range p.waiters {
				close(w)
			}
			p.waiters = nil
		}
		return
	}
	p.initErr, p.initFail = nil, 0
	p.stats.ColdStarts++
	if restored {
		p.stats.Restores++
	}
	p.log.Debug("instance ready", "seconds", time.Since(start).Seconds(), "restored", restored)
	inst.MeasureResident(true)
	pi := &pooled{inst: inst, limit: p.requestLimit(), lastUsed: time.Now()}
	if p.state == closed {
		p.live--
		inst.Close(context.Background())
		return
	}
	p.all[pi] = struct{}{}
	p.putLocked(pi)
}

// startInstance restores an instance from the app's snapshot when there
// is one, and otherwise starts a fresh one (from the store's base image if
// it has one), saving the snapshot that later instances restore from if
// there is none yet. A snapshot that fails to
// restore is dropped and instances start fresh again.
func (p *Pool) startInstance(ctx context.Context) (inst *sandbox.Instance, restored bool, err error) {
	snap, save := p.snapshot(ctx)
	if snap != nil {
		inst, err = p.engine.Restore(ctx, p.app, snap)
		switch {
		case err == nil:
			return inst, true, nil
		case errors.Is(err, sandbox.ErrSnapshotClosed):
			// Retired by a reload, or replaced by a newer save: this start
			// is fresh, the next one asks the store again.
			p.setSnapshot(snapUnknown, nil)
		default:
			p.log.Warn("restore from snapshot failed; discarded it, starting instances fresh", "err", err, "snapshot", snap.Path())
			p.cfg.Snapshots.Discard(p.snapKey)
			p.setSnapshot(snapDisabled, nil)
		}
	}
	if p.cfg.Snapshots != nil {
		inst, err = p.cfg.Snapshots.NewInstance(ctx, p.engine, p.app)
	} else {
		inst, err = p.engine.NewInstance(ctx, p.app)
	}
	if err != nil || !save {
		if save {
			p.setSnapshot(snapMissing, nil)
		}
		return inst, false, err
	}
	start := time.Now()
	if snap, err = p.cfg.Snapshots.Save(ctx, inst, p.snapKey); err != nil {
		p.log.Warn("snapshot not saved; instances start fresh", "err", err)
		p.setSnapshot(snapDisabled, nil)
		if inst.Broken() {
			return nil, false, err
		}
		return inst, false, nil
	}
	p.log.Info("snapshot saved", "seconds", time.Since(start).Seconds(), "bytes", snap.MemorySize(), "snapshot", snap.Path())
	p.setSnapshot(snapReady, snap)
	return inst, false, nil
}

// snapshot returns the open snapshot to restore from, or nil; save is true
// when the caller is the one to start fresh and save the missing snapshot
// (the state is then snapSaving until setSnapshot).
func (p *Pool) snapshot(ctx context.Context) (snap *sandbox.Snapshot, save bool) {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	if p.snapState == snapUnknown {
		p.snapState = p.findSnapshotLocked(ctx)
	}
	switch p.snapState {
	case snapReady:
		return p.snap, false
	case snapMissing:
		p.snapState = snapSaving
		return nil, true
	}
	return nil, false
}

func (p *Pool) findSnapshotLocked(ctx context.Context) snapState {
	if p.cfg.Snapshots == nil {
		return snapDisabled
	}
	key := p.cfg.SnapshotKey
	if key == "" {
		var err error
		if key, err = p.engine.SnapshotKey(ctx, p.app); err != nil {
			p.log.Warn("no snapshot key; instances start fresh", "err", err)
			return snapDisabled
		}
	}
	p.snapKey = key
	snap, err := p.cfg.Snapshots.Open(key)
	switch {
	case err == nil:
		p.snap = snap
		return snapReady
	case !errors.Is(err, fs.ErrNotExist):
		p.log.Warn("snapshot rejected and removed; a new one will be saved", "err", err)
	}
	return snapMissing
}

func (p *Pool) setSnapshot(st snapState, snap *sandbox.Snapshot) {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	p.snapState, p.snap = st, snap
}

func (p *Pool) requestLimit() int {
	if p.cfg.MaxRequests <= 0 {
		return 0
	}
	jitter := 0
	if p.cfg.MaxRequestsJitter > 0 {
		jitter = rand.IntN(p.cfg.MaxRequestsJitter + 1)
	}
	return p.cfg.MaxRequests + jitter
}

// putLocked gives an instance to the oldest waiter, or makes it idle.
func (p *Pool) putLocked(pi *pooled) {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w <- pi
		return
	}
	p.idle = append(p.idle, pi)
}

// acquire returns an instance, creating one if the pool is below its
// maximum, or waits in the bounded queue until ctx ends.
func (p *Pool) acquire(ctx context.Context) (*pooled, error) {
	p.mu.Lock()
	if p.state == closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	if n := len(p.idle); n > 0 {
		pi := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return pi, nil
	}
	if len(p.waiters) >= p.cfg.QueueLength {
		p.stats.Rejected++
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	if retry := p.initAt.Add(initBackoff(p.initFail)); p.live == 0 && p.initErr != nil && time.Now().Before(retry) {
		// The app failed to start lately: fail fast instead of paying
		// another init per request, and say why once per interval.
		err := &BackoffError{Err: p.initErr, Retry: retry}
		if time.Since(p.initLog) >= initRetryDelay {
			p.initLog = time.Now()
			p.log.Warn("answering 503: the app cannot start", "err", p.initErr, "retry_in", time.Until(retry).Round(time.Second).String())
		}
		p.mu.Unlock()
		return nil, err
	}
	w := make(chan *pooled, 1)
	p.waiters = append(p.waiters, w)
	p.warmLocked()
	p.mu.Unlock()
	select {
	case pi, ok := <-w:
		if !ok {
			p.mu.Lock()
			err := p.initErr
			p.mu.Unlock()
			if err == nil {
				err = ErrPoolClosed
			}
			return nil, fmt.Errorf("%w: %w", ErrNoInstance, err)
		}
		return pi, nil
	case <-ctx.Done():
		p.mu.Lock()
		if !p.removeWaiterLocked(w) {
			// An instance was handed over as we gave up: pass it on.
			if pi, ok := <-w; ok {
				p.putLocked(pi)
			}
		}
		p.mu.Unlock()
		return nil, context.Cause(ctx)
	}
}

func (p *Pool) removeWaiterLocked(w chan *pooled) bool {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// settleHook, if set (by tests), runs at the start of an instance's
// settling after its first request.
var settleHook func()

// release returns an instance after a request, replacing it if it broke or
// reached its request limit. After an instance's first request, the pages it
// wrote are read (its snapshot's write set, its RAM charge) in the
// background, off the response's path, before it is reused.
func (p *Pool) release(pi *pooled, o Outcome) {
	pi.served++
	pi.lastUsed = time.Now()
	if pi.served == 1 && !pi.inst.Broken() && o.Reusable() {
		p.mu.Lock()
		background := p.state != closed
		if background {
			// Waiters wait for it rather than start another instance.
			p.settling++
			p.stopped.Add(1)
		}
		p.mu.Unlock()
		if background {
			go func() {
				defer p.stopped.Done()
				if settleHook != nil {
					settleHook()
				}
				if err := pi.inst.RecordWriteSet(); err != nil {
					p.log.Warn("snapshot write set not recorded", "err", err)
				}
				// The first request dirties most of what the instance will hold.
				pi.inst.MeasureResident(true)
				p.mu.Lock()
				defer p.mu.Unlock()
				p.settling--
				p.putLockedAfterServing(pi, o)
			}()
			return
		}
	}
	if !pi.inst.Broken() {
		pi.inst.MeasureResident(false)
	}
	p.mu.Lock()
	p.putLockedAfterServing(pi, o)
	p.mu.Unlock()
	if p.engine.Serving()+1 < runtime.GOMAXPROCS(0) {
		// A waiter that got the instance was readied on this P, where it
		// would wait for the rest of this request (the response's last
		// flush, the log, the next read); so would a request just read
		// that finds it idle. A P is spare: yield, so that the guest runs
		// again at once and this goroutine's tail moves to the spare P
		// (pool/README.md, "Handing an instance over").
		runtime.Gosched()
	}
}

// putLockedAfterServing takes back an instance that served, or replaces it.
func (p *Pool) putLockedAfterServing(pi *pooled, o Outcome) {
	switch {
	case o.Err != nil && errors.Is(o.Err, sandbox.ErrDeadline):
		p.stats.Timeouts++
	case o.Err != nil:
		p.stats.Traps++
	}
	if pi.inst.Broken() || !o.Reusable() || (pi.limit > 0 && pi.served >= pi.limit) || p.state == closed {
		p.live--
		delete(p.all, pi)
		p.stats.Replaced++
		go pi.inst.Close(context.Background())
		p.warmLocked()
		return
	}
	p.putLocked(pi)
}

// Serve serves r with an instance of the pool and answers a failure with
// its status (status.go): the queue is full or no instance can start, the
// deadline passes while waiting or in the guest, the guest traps.
func (p *Pool) Serve(w http.ResponseWriter, r *http.Request, info RequestInfo, log sandbox.GuestLog) Outcome {
	// The guest's deadline is the pool's; a client that goes away does not
	// kill the instance (its writes fail instead).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.cfg.RequestTimeout)
	defer cancel()
	pi, err := p.acquire(ctx)
	if err != nil {
		Fail(w, err)
		return failed(err)
	}
	o, sent := serveInstance(pi.inst, w, r.WithContext(ctx), info, log)
	p.release(pi, o)
	sent()
	return o
}

// reapLoop closes instances idle longer than IdleTimeout beyond MinWarm.
func (p *Pool) reapLoop() {
	defer p.stopped.Done()
	t := time.NewTicker(min(p.cfg.IdleTimeout/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		cutoff := time.Now().Add(-p.cfg.IdleTimeout)
		var keep []*pooled
		for i, pi := range p.idle { // oldest first
			if pi.lastUsed.Before(cutoff) && len(p.idle)-i > p.cfg.MinWarm && len(keep) == 0 {
				p.live--
				delete(p.all, pi)
				go pi.inst.Close(context.Background())
				continue
			}
			keep = append(keep, pi)
		}
		p.idle = keep
		p.mu.Unlock()
	}
}

// hold marks the pool in use by a request that got it from a WarmSet.
func (p *Pool) hold() {
	p.mu.Lock()
	p.holds++
	p.mu.Unlock()
}

// markDropped records that the WarmSet let the pool go (it lingers), and reports
// whether the caller must start closeWhenUnheld (none is running).
func (p *Pool) markDropped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == serving {
		p.state = lingering
	}
	if p.closerRunning || p.state == closed {
		return false
	}
	p.closerRunning = true
	return true
}

// revive takes a lingering pool back for a request, held, unless it is
// already closing.
func (p *Pool) revive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == closing || p.state == closed {
		return false
	}
	p.state = serving
	p.holds++
	return true
}

// letGo reports whether the pool was let go and is not closed yet.
func (p *Pool) letGo() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == lingering || p.state == closing
}

// unhold ends a hold.
func (p *Pool) unhold() {
	p.mu.Lock()
	if p.holds--; p.holds == 0 {
		p.unheld.Broadcast()
	}
	p.mu.Unlock()
}

// closeWhenUnheld closes the lingering pool once no request holds it. It
// returns without closing if the pool was revived meanwhile, and at once if
// it was closed.
func (p *Pool) closeWhenUnheld() {
	p.mu.Lock()
	for p.state == lingering && p.holds > 0 {
		p.unheld.Wait()
	}
	p.closerRunning = false
	if p.state == serving || p.state == closed {
		p.mu.Unlock()
		return
	}
	p.state = closing
	p.mu.Unlock()
	p.Close()
}

// Close stops warming, closes idle instances and makes busy ones close on
// release. It waits for background work to end.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.state == closed {
		p.mu.Unlock()
		return
	}
	p.state = closed
	p.unheld.Broadcast()
	idle := p.idle
	p.idle = nil
	p.live -= len(idle)
	for _, pi := range idle {
		delete(p.all, pi)
	}
	for _, w := range p.waiters {
		close(w)
	}
	p.waiters = nil
	p.mu.Unlock()
	close(p.stop)
	for _, pi := range idle {
		pi.inst.Close(context.Background())
	}
	p.stopped.Wait()
}
