package netyield

import "time"

// SetFallback sets how long a parked check-in waits for a read.
func (p *Poller) SetFallback(d time.Duration) { p.fallback = d }

// Blocked reports whether a goroutine is in a Read or Accept of one of
// the watched sockets.
func (p *Poller) Blocked() bool {
	found := false
	p.sockets.Range(func(_, v any) bool {
		found = found || v.(*socket).blocked.Load()
		return !found
	})
	return found
}
