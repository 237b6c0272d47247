package server

import (
	"context"
	"log/slog"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// Each tenant may log this many lines a second (with this burst); beyond
// that lines are counted and dropped, so a noisy tenant cannot flood the
// host's log.
const (
	tenantLogRate  = 50
	tenantLogBurst = 200
)

// newRateLimitedLog turns the guest's log_write calls (stdout, stderr,
// wsgi.errors, tracebacks) into host log records with the tenant's name.
func newRateLimitedLog(log *slog.Logger) hostabi.Logger {
	limit := rate.NewLimiter(tenantLogRate, tenantLogBurst)
	var dropped atomic.Int64
	return func(level int32, msg []byte) {
		if !limit.Allow() {
			dropped.Add(1)
			return
		}
		lvl := slog.LevelInfo
		if level == hostabi.LogError {
			lvl = slog.LevelError
		}
		if n := dropped.Swap(0); n > 0 {
			log.Warn("tenant log lines dropped by the rate limit", "dropped", n)
		}
		log.Log(context.Background(), lvl, string(msg), "source", "guest")
	}
}
