package server_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
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
	// The burst, plus 50 lines a second for however long the loop took
	// (4 s on the slowest machine allowed for).
	if n < 200 || n > 400 {
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

// attr is the value of a record's attribute key, or nil.
func attr(rec slog.Record, key string) any {
	var v any
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.Any()
		}
		return true
	})
	return v
}

// TestTenantLogByteLimit: lines of hostabi.MaxLogLine bytes pass until the
// byte burst is spent, well within the line burst; the rest are dropped,
// and the warning counts them in lines and bytes.
func TestTenantLogByteLimit(t *testing.T) {
	rec := &records{}
	log := server.NewTenantLog(slog.New(rec))
	line := bytes.Repeat([]byte("b"), hostabi.MaxLogLine)
	const sent = 100 // under the line burst of 200
	for i := 0; i < sent; i++ {
		log(hostabi.LogInfo, line)
	}
	rec.mu.Lock()
	passed := len(rec.list)
	rec.mu.Unlock()
	if burst := 512 << 10 / hostabi.MaxLogLine; passed < burst || passed > burst+8 {
		t.Fatalf("%d of %d lines of %d bytes logged; want about the byte burst's %d", passed, sent, len(line), burst)
	}
	// Tokens come back at 64 KiB/s: poll until a line passes again, then
	// it follows a warning that counts every line dropped before it.
	calls := sent
	deadline := time.Now().Add(10 * time.Second)
	for {
		log(hostabi.LogInfo, line)
		calls++
		rec.mu.Lock()
		n := len(rec.list)
		rec.mu.Unlock()
		if n > passed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no line passed again within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	warn := rec.list[passed]
	dropped := int64(calls - passed - 1)
	if warn.Level != slog.LevelWarn || attr(warn, "dropped") != dropped || attr(warn, "dropped_bytes") != dropped*int64(len(line)) {
		t.Fatalf("warning %q dropped=%v dropped_bytes=%v; want %d lines, %d bytes",
			warn.Message, attr(warn, "dropped"), attr(warn, "dropped_bytes"), dropped, dropped*int64(len(line)))
	}
}

// TestTenantLogTruncates: a 50 MB message becomes a record of
// hostabi.MaxLogLine bytes and a marker, and the host allocates about that.
func TestTenantLogTruncates(t *testing.T) {
	rec := &records{}
	log := server.NewTenantLog(slog.New(rec))
	msg := bytes.Repeat([]byte("x"), 50_000_000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	log(hostabi.LogInfo, msg)
	runtime.ReadMemStats(&after)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := fmt.Sprintf("… [truncated %d bytes]", len(msg)-hostabi.MaxLogLine)
	if len(rec.list) != 1 || len(rec.list[0].Message) != hostabi.MaxLogLine+len(want) || !strings.HasSuffix(rec.list[0].Message, want) {
		t.Fatalf("%d records; want one of %d bytes ending %q", len(rec.list), hostabi.MaxLogLine+len(want), want)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("logging %d bytes allocated %d bytes", len(msg), n)
	}
}
