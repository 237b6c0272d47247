package netyield

import "time"

// SetFallback sets how long a parked check-in waits for a read.
func (p *Poller) SetFallback(d time.Duration) { p.fallback = d }

// Parked counts the check-ins parked now.
func (p *Poller) Parked() int32 { return p.parked.Load() }
