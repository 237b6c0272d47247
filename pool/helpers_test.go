package pool_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestMain fails the package when a test leaks a goroutine: a pool must
// not leak one because of a guest.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// appsDir holds the sandbox's test apps.
const appsDir = "../sandbox/testdata/apps"

var (
	engineOnce sync.Once
	engine     *sandbox.Engine
	engineErr  error
)

// testEngine shares one Engine (and so one compiled interpreter) across the
// package's tests.
func testEngine(t *testing.T) *sandbox.Engine {
	t.Helper()
	in := testinterp.Require(t)
	engineOnce.Do(func() {
		engine, engineErr = sandbox.New(context.Background(), sandbox.Options{Interpreter: in})
	})
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return engine
}

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) log(level slog.Level, msg []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(msg))
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func newPool(t *testing.T, app string, cfg pool.Config) (*pool.Pool, *logLines) {
	t.Helper()
	logs := &logLines{}
	p := pool.New(testEngine(t), sandbox.AppConfig{App: app, Dir: appsDir, Log: logs.log}, cfg)
	t.Cleanup(p.Close)
	return p, logs
}

func get(p *pool.Pool, logs *logLines, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.Serve(rec, httptest.NewRequest("GET", path, nil), pool.RequestInfo{}, logs.log)
	return rec
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
