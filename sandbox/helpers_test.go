package sandbox_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
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

// postToDataApp sends n POST / requests at once to app (of testdata/apps)
// served with a data folder by two instances, and returns each answer as
// "CODE BODY", with the log for failure messages.
func postToDataApp(t *testing.T, app string, n int) ([]string, *logLines) {
	t.Helper()
	logs := &logLines{}
	p := pool.New(testEngine(t), sandbox.AppConfig{
		App: app, Dir: "testdata/apps", DataDir: t.TempDir(), Log: logs.log,
	}, pool.Config{MinWarm: 2, MaxInstances: 2})
	defer p.Close()
	var wg sync.WaitGroup
	results := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			p.Serve(rec, httptest.NewRequest("POST", "/", nil), pool.RequestInfo{}, logs.log)
			results <- strconv.Itoa(rec.Code) + " " + rec.Body.String()
		}()
	}
	wg.Wait()
	close(results)
	var out []string
	for r := range results {
		out = append(out, r)
	}
	return out, logs
}

// inSequence fails t unless the counts, in any order, are 1 to len(counts).
func inSequence(t *testing.T, counts []int, what string) {
	t.Helper()
	sort.Ints(counts)
	for i, v := range counts {
		if v != i+1 {
			t.Fatalf("counts %v: %s", counts, what)
		}
	}
}
