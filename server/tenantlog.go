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

// NewTenantLog turns the guest's log_write calls (stdout, stderr,
// wsgi.errors, tracebacks) into records of log (which names the tenant),
// marked source=guest, at most tenantLogRate lines a second after a burst of
// tenantLogBurst; lines beyond are dropped and counted in a warning.
func NewTenantLog(log *slog.Logger) hostabi.Logger {
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
