package sandbox_test

import (
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestSQLiteConcurrentWriters sends concurrent writes to a tenant with two
// instances and a SQLite file in its data folder: the requests run side by
// side and SQLite's locks (held by the host, ABI.md "File locks") order
// their transactions, so every row lands, each request sees the previous
// ones, and the file stays consistent.
func TestSQLiteConcurrentWriters(t *testing.T) {
	logs := &logLines{}
	p := pool.New(testEngine(t), sandbox.AppConfig{
		App: "sqlite_writer:app", Dir: "testdata/apps", DataDir: t.TempDir(), Log: logs.log,
	}, pool.Config{MinWarm: 2, MaxInstances: 2})
	defer p.Close()
	const n = 30
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
	var seen []int
	for r := range results {
		f := strings.Fields(r)
		if len(f) != 3 || f[0] != "200" || f[2] != "ok" {
			t.Fatalf("response %q; log:\n%s", r, logs)
		}
		v, _ := strconv.Atoi(f[1])
		seen = append(seen, v)
	}
	sort.Ints(seen)
	for i, v := range seen {
		if v != i+1 {
			t.Fatalf("counts %v: a write was lost or two requests saw the same state", seen)
		}
	}
}
