package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// Each tenant may log this many lines a second (with this burst), and this
// many bytes a second (with this burst); beyond either, lines are counted
// and dropped, so a noisy tenant cannot flood the host's log. The byte rate
// lets the line rate through at lines of about 1 KiB (a traceback line or a
// request dump); only longer lines meet it. One line is at most
// hostabi.MaxLogLine bytes and its marker, well under the byte burst.
const (
	tenantLogRate      = 50
	tenantLogBurst     = 200
	tenantLogByteRate  = 64 << 10
	tenantLogByteBurst = 512 << 10
)

// NewTenantLog turns the guest's log_write calls (stdout, stderr,
// wsgi.errors, tracebacks) into records of log (which names the tenant),
// marked source=guest, at most tenantLogRate lines and tenantLogByteRate
// bytes a second after bursts of tenantLogBurst lines and
// tenantLogByteBurst bytes; lines beyond are dropped and counted (lines and
// bytes) in a warning. A message over hostabi.MaxLogLine bytes is
// truncated first (hostabi.TruncateLog), so the host never copies more.
func NewTenantLog(log *slog.Logger) hostabi.Logger {
	lines := rate.NewLimiter(tenantLogRate, tenantLogBurst)
	bytes := rate.NewLimiter(tenantLogByteRate, tenantLogByteBurst)
	var dropped, droppedBytes atomic.Int64
	return func(level int32, msg []byte) {
		msg = hostabi.TruncateLog(msg)
		now := time.Now()
		// A line dropped for its bytes has used its line token: a tenant
		// sending long lines slows its short ones too.
		if !lines.AllowN(now, 1) || !bytes.AllowN(now, len(msg)) {
			dropped.Add(1)
			droppedBytes.Add(int64(len(msg)))
			return
		}
		lvl := slog.LevelInfo
		if level == hostabi.LogError {
			lvl = slog.LevelError
		}
		if n := dropped.Swap(0); n > 0 {
			log.Warn("tenant log lines dropped by the rate limit", "dropped", n, "dropped_bytes", droppedBytes.Swap(0))
		}
		log.Log(context.Background(), lvl, string(msg), "source", "guest")
	}
}
