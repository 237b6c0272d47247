package server_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// TestTenantLogRateLimit: a tenant that writes 1000 lines at once gets its
// burst through; the rest are dropped and counted in one warning.
func TestTenantLogRateLimit(t *testing.T) {
	rec := &records{}
	log := server.NewTenantLog(slog.New(rec))
	for i := 0; i < 1000; i++ {
		log(hostabi.LogInfo, []byte("noise"))
	}
	rec.mu.Lock()
	n := len(rec.list)
	rec.mu.Unlock()
	if n < 200 || n > 260 {
		t.Fatalf("%d of 1000 lines logged; want about the burst of 200", n)
	}
	time.Sleep(100 * time.Millisecond) // a few tokens come back
	log(hostabi.LogError, []byte("after"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	last, warn := rec.list[len(rec.list)-1], rec.list[len(rec.list)-2]
	var dropped int64
	warn.Attrs(func(a slog.Attr) bool {
		if a.Key == "dropped" {
			dropped = a.Value.Int64()
		}
		return true
	})
	if warn.Level != slog.LevelWarn || dropped != int64(1000-n) || last.Message != "after" || last.Level != slog.LevelError {
		t.Fatalf("after the burst: warning %q (dropped %d, want %d), then %q at %v", warn.Message, dropped, 1000-n, last.Message, last.Level)
	}
}
