package pool

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// WarmSet keeps tenants' pools warm within one memory budget for the whole
// process. Which tenants stay is ristretto's decision (TinyLFU admission,
// sampled LFU eviction), with each pool's cost its measured instance memory,
// except when a cost update puts the set over its budget: then trim lets go
// of the least recently used pools.
// A pool that ristretto evicts or refuses lingers and is closed once the
// requests that got it are answered, never under them (state, in pool.go,
// tells the pool's life).
//
// The budget wins over a tenant's MinWarm: a tenant may be evicted while it
// wants warm instances.
type WarmSet struct {
	engine *sandbox.Engine
	cache  *ristretto.Cache[string, *Pool]

	mu        sync.Mutex
	live      map[string]*Pool   // pools in the cache (ristretto's Get may lag a Set)
	lingering map[string]*Pool   // the last pool let go per key, until it closes
	dropped   map[*Pool]struct{} // every pool let go and not closed yet, for Close

	budget  int64
	used    uint64 // ticks at every hold; a pool's lastUsed orders trim
	evicted atomic.Int64
	closing atomic.Bool    // Close is tearing the cache down: not evictions
	closers sync.WaitGroup // pools closing in the background; Close waits for them
}

// estimatedInstanceCost is a new pool's cost until its instances exist and
// can be measured: the resident memory of a started interpreter with a
// small app (a restored one holds less, a fresh Flask instance more).
const estimatedInstanceCost = 8 << 20

// admissionCounters sizes ristretto's TinyLFU for budget: about ten
// counters per pool that fits at the admission estimate, as ristretto
// advises (ten times the items a full cache holds). The sketch halves its
// 4-bit counters every that many accesses, so the size is also the window
// of the frequencies it compares: far more counters than pools would let
// every tenant that is visited now and then reach the counters' ceiling
// (15) before a halving, after which admission and eviction no longer
// tell a hot tenant from a cold one and pick victims nearly at random.
func admissionCounters(budget int64) int64 {
	return max(1000, 10*budget/estimatedInstanceCost)
}

// memoryOf is what the set charges a pool; tests replace it.
var memoryOf = (*Pool).Memory

// NewWarmSet makes a set of pools on e with a budget in bytes of instance
// memory.
func NewWarmSet(e *sandbox.Engine, budget int64) (*WarmSet, error) {
	w := &WarmSet{engine: e, budget: budget, live: map[string]*Pool{}, lingering: map[string]*Pool{}, dropped: map[*Pool]struct{}{}}
	cache, err := ristretto.NewCache(&ristretto.Config[string, *Pool]{
		NumCounters:        admissionCounters(budget),
		MaxCost:            budget,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(it *ristretto.Item[*Pool]) { w.drop(it.Value) },
		OnReject:           func(it *ristretto.Item[*Pool]) { w.drop(it.Value) },
	})
	if err != nil {
		return nil, fmt.Errorf("pool: warm set: %w", err)
	}
	w.cache = cache
	return w, nil
}

// drop closes a pool ristretto let go of, unless a newer pool took its key.
func (w *WarmSet) drop(p *Pool) {
	if p == nil {
		return
	}
	if !w.closing.Load() {
		w.evicted.Add(1)
		p.log.Info("tenant evicted from the warm set", "cost", p.Memory())
	}
	w.letGo(p)
}

// Serve serves r with key's warm pool, or makes one (a cold start) and
// offers it to the set. The pool serves r even when the set refuses or
// evicts it meanwhile: a dropped pool closes once no request holds it.
func (w *WarmSet) Serve(key string, app sandbox.AppConfig, cfg Config, rw http.ResponseWriter, r *http.Request, info RequestInfo, log sandbox.GuestLog) Outcome {
	p := w.hold(key, app, cfg)
	defer p.unhold()
	return p.Serve(rw, r, info, log)
}

// hold returns key's pool, made and offered to the set if there is none,
// held for the caller until it calls unhold.
func (w *WarmSet) hold(key string, app sandbox.AppConfig, cfg Config) *Pool {
	w.cache.Get(key) // counts the access for admission and eviction
	estimate := estimatedInstanceCost * int64(max(1, cfg.MinWarm))
	w.mu.Lock()
	p, ok := w.live[key]
	switch {
	case ok:
		// Held before the set can drop it: drop takes it out of live under mu.
		p.hold()
	case w.lingering[key] != nil && w.lingering[key].revive():
		// The tenant's last pool still serves: take it back (held) and
		// offer it again, so that its limits hold across the refusals.
		p = w.lingering[key]
		delete(w.lingering, key)
		delete(w.dropped, p)
		w.live[key] = p
	default:
		p = New(w.engine, app, cfg)
		p.key = key
		p.hold()
		// Only this caller offers the new pool to ristretto: callers that
		// find it before its instances are measured see no cost change. A
		// second Set of a key that ristretto has not stored yet would be
		// refused, and the refusal would drop this pool.
		p.costChanged(estimate)
		w.live[key] = p
	}
	w.used++
	p.lastUsed = w.used
	w.mu.Unlock()
	cost := memoryOf(p)
	if cost == 0 {
		cost = estimate
	}
	if !ok || p.costChanged(cost) {
		w.cache.Set(key, p, cost)
		w.cache.Wait()
		if ok {
			w.trim(key)
		}
	}
	return p
}

// trim lets go of the least recently used pools while the set's cost is
// over its budget. Ristretto applies a cost update without evicting (it
// evicts only to admit a new key), so after key's cost grew the set does:
// otherwise it stays over budget until the next admission, which then
// evicts many pools at once, sampled, hot ones too. key's pool
// goes last, only if it alone is over the budget.
func (w *WarmSet) trim(key string) {
	for {
		w.mu.Lock()
		var total int64
		var victim *Pool
		for k, p := range w.live {
			total += p.charged()
			if k != key && (victim == nil || p.lastUsed < victim.lastUsed) {
				victim = p
			}
		}
		if victim == nil {
			victim = w.live[key]
		}
		w.mu.Unlock()
		if total <= w.budget || victim == nil {
			return
		}
		w.cache.Del(victim.key)
		w.drop(victim)
	}
}

// Pool returns key's pool if the set holds one.
func (w *WarmSet) Pool(key string) *Pool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live[key]
}

// Remove closes key's pool (e.g. the tenant was removed or reloaded).
func (w *WarmSet) Remove(key string) {
	w.mu.Lock()
	p := w.live[key]
	delete(w.live, key)
	w.mu.Unlock()
	w.cache.Del(key)
	if p != nil {
		w.letGo(p)
	}
}

// WarmStats describe the set.
type WarmStats struct {
	Tenants   int
	Cost      int64 // bytes of instance memory the set holds
	Evictions int64 // pools evicted or refused
}

// Stats returns a snapshot.
func (w *WarmSet) Stats() WarmStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := WarmStats{Tenants: len(w.live), Evictions: w.evicted.Load()}
	for _, p := range w.live {
		st.Cost += memoryOf(p)
	}
	return st
}

// letGo takes p out of the set. It lingers, serving the requests that hold
// it and those that revive it (see hold), and closes in the background once
// none holds it.
func (w *WarmSet) letGo(p *Pool) {
	w.mu.Lock()
	if w.live[p.key] == p {
		delete(w.live, p.key)
	}
	w.lingering[p.key] = p
	w.dropped[p] = struct{}{}
	startCloser := p.markDropped()
	w.mu.Unlock()
	if !startCloser {
		return // its closer is already waiting
	}
	w.closers.Add(1)
	go func() {
		defer w.closers.Done()
		p.closeWhenUnheld()
		w.mu.Lock()
		defer w.mu.Unlock()
		if !p.letGo() { // closed, or revived; let go again, it stays
			delete(w.dropped, p)
			if w.lingering[p.key] == p {
				delete(w.lingering, p.key)
			}
		}
	}()
}

// Close closes every pool, those still held by requests too, and waits for
// those closing in the background.
func (w *WarmSet) Close() {
	w.closing.Store(true)
	w.cache.Close()
	w.mu.Lock()
	var pools []*Pool
	for _, p := range w.live {
		pools = append(pools, p)
	}
	for p := range w.dropped {
		pools = append(pools, p)
	}
	w.live = map[string]*Pool{}
	w.lingering = map[string]*Pool{}
	w.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
	w.closers.Wait()
}
