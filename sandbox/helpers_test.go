package sandbox_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

func nowUnix() string { return strconv.FormatInt(time.Now().Unix(), 10) }

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

func newInstance(t *testing.T, app string) (*sandbox.Instance, *logLines) {
	t.Helper()
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(context.Background(), sandbox.AppConfig{
		App: app, Dir: "testdata/apps", Log: logs.log,
	})
	if err != nil {
		t.Fatalf("NewInstance(%s): %v", app, err)
	}
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst, logs
}

func do(inst *sandbox.Instance, req *http.Request, logs *logLines) (*httptest.ResponseRecorder, pool.Outcome) {
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, logs.log)
	return rec, o
}

func newPool(t *testing.T, app string, cfg pool.Config) (*pool.Pool, *logLines) {
	t.Helper()
	logs := &logLines{}
	p := pool.New(testEngine(t), sandbox.AppConfig{App: app, Dir: "testdata/apps", Log: logs.log}, cfg)
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
