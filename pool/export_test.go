package pool

import "github.com/wsgi-wasm/wsgi-wasm/sandbox"

// SetSettleHook makes f run at the start of every instance's settling after
// its first request, until the returned function is called.
func SetSettleHook(f func()) (restore func()) {
	settleHook = f
	return func() { settleHook = nil }
}

// HoldPool returns the pool a request for key would get (making and
// offering it as a request would), without keeping it held.
func (w *WarmSet) HoldPool(key string, app sandbox.AppConfig, cfg Config) *Pool {
	p := w.hold(key, app, cfg)
	p.unhold()
	return p
}

// Lingering counts the pools the set let go that are not closed yet.
func (w *WarmSet) Lingering() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dropped)
}

// Holds counts the requests holding the pool.
func (p *Pool) Holds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holds
}

// SetMemoryHook makes the warm set charge pools f(p) instead of their
// measured memory, until the returned function is called.
func SetMemoryHook(f func(*Pool) int64) (restore func()) {
	memoryOf = f
	return func() { memoryOf = (*Pool).Memory }
}

// EstimatedInstanceCost is a new pool's cost until it is measured.
const EstimatedInstanceCost = estimatedInstanceCost
