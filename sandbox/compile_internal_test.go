package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

// TestCompileProgress: a compile that misses the cache (a fresh CacheDir)
// logs progress while it runs and then how long it took, and leaves no
// idle heap behind for the process to hold; a second engine on the same
// cache says it loaded the module from there.
func TestCompileProgress(t *testing.T) {
	in := testinterp.Require(t)
	every := compileProgressEvery
	compileProgressEvery = 200 * time.Millisecond
	t.Cleanup(func() { compileProgressEvery = every })
	cache := t.TempDir()

	compile := func() []map[string]any {
		var buf bytes.Buffer
		e, err := New(context.Background(), Options{Interpreter: in, CacheDir: cache,
			Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(context.Background())
		if _, err := e.compile(context.Background(), e.reactorPath); err != nil {
			t.Fatal(err)
		}
		var recs []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			recs = append(recs, r)
		}
		return recs
	}

	first := compile()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// The heap the process keeps from the kernel: about 165 MiB if the
	// compiler's garbage is left to the scavenger, 11 MiB when given back.
	if held := ms.HeapSys - ms.HeapReleased; held > 64<<20 {
		t.Errorf("after a cold compile the process holds %d MiB of heap; want the compiler's garbage given back", held>>20)
	}
	last := first[len(first)-1]
	progress := first[:len(first)-1]
	if last["msg"] != "interpreter compiled and cached for the next start" || last["from_cache"] != false || last["cache_dir"] != cache {
		t.Fatalf("first compile, last record: %v", last)
	}
	seconds := last["seconds"].(float64)
	// One progress line per interval. A ticker drops a tick when its reader
	// is late (CI runs this under -race beside a two-core compile), so ask
	// for half of them: a ticker that logs once or stops early still fails.
	if want := int(seconds/compileProgressEvery.Seconds()) / 2; len(progress) < max(want, 1) {
		t.Fatalf("compile took %.1f s but logged %d progress lines: %v", seconds, len(progress), progress)
	}
	for _, r := range progress {
		if r["msg"] != "compiling interpreter (first start; cached afterwards)" || r["elapsed_seconds"] == nil {
			t.Fatalf("progress record %v", r)
		}
	}
	t.Logf("cold compile: %.1f s, %d progress lines", seconds, len(progress))

	second := compile()
	last = second[len(second)-1]
	if last["msg"] != "interpreter loaded from the compilation cache" || last["from_cache"] != true {
		t.Fatalf("second compile, last record: %v", last)
	}
	if s := last["seconds"].(float64); s >= seconds {
		t.Fatalf("loading from the cache (%.1f s) is not faster than compiling (%.1f s)", s, seconds)
	}
}
