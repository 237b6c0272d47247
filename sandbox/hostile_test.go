package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// hostileDir copies testdata/hostile into a temporary tenant folder.
func hostileDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir("testdata/hostile")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/hostile", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestOpenFilesBounded: a guest that opens files and keeps them gets an
// OSError past MaxOpenFiles, and the host holds no more descriptors than
// that for it; closing them gives the budget back.
func TestOpenFilesBounded(t *testing.T) {
	dir := hostileDir(t)
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(context.Background(), sandbox.AppConfig{App: "hoard:application", Dir: dir, Log: logs.log})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	before := openFDs(t)
	rec, o := do(inst, httptest.NewRequest("GET", "/", nil), logs)
	if o.Err != nil || rec.Code != 200 {
		t.Fatalf("%d %+v\n%s", rec.Code, o, logs)
	}
	var opened int
	var kind string
	fmt.Sscanf(rec.Body.String(), "%d %s", &opened, &kind)
	if opened == 0 || opened >= sandbox.MaxOpenFiles || kind == "" {
		t.Fatalf("guest opened %d files (%q), want fewer than %d then an OSError", opened, kind, sandbox.MaxOpenFiles)
	}
	if grown := openFDs(t) - before; grown > sandbox.MaxOpenFiles {
		t.Fatalf("the host holds %d more descriptors, over the budget of %d", grown, sandbox.MaxOpenFiles)
	}
	// A second request finds the budget spent; closing gives it back.
	rec, _ = do(inst, httptest.NewRequest("GET", "/?close", nil), logs)
	if !strings.HasPrefix(rec.Body.String(), "0 ") {
		t.Fatalf("second request: %q, want no file opened", rec.Body.String())
	}
	rec, _ = do(inst, httptest.NewRequest("GET", "/", nil), logs)
	if again := strings.Fields(rec.Body.String()); len(again) == 0 || again[0] != fmt.Sprint(opened) {
		t.Fatalf("after closing: %q, want %d opened again", rec.Body.String(), opened)
	}
}

// TestFIFOInAppFolder: a FIFO in the tenant's folder is refused at load
// (CompileApp names it) and, if it appears later, an open in the guest
// fails at once instead of blocking a host thread.
func TestFIFOInAppFolder(t *testing.T) {
	dir := hostileDir(t)
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.py"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng := testEngine(t)
	done := make(chan error, 1)
	go func() { _, err := eng.CompileApp(context.Background(), dir, 0); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, sandbox.ErrSpecialFileInApp) || !strings.Contains(err.Error(), "pipe.py") {
			t.Fatalf("CompileApp = %v, want ErrSpecialFileInApp naming pipe.py", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("CompileApp blocked on a FIFO")
	}
	logs := &logLines{}
	inst, err := eng.NewInstance(context.Background(), sandbox.AppConfig{App: "hoard:fifo", Dir: dir, Log: logs.log})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx), pool.RequestInfo{}, logs.log)
	if o.Err != nil || rec.Code != 200 || !strings.Contains(rec.Body.String(), "Error") {
		t.Fatalf("guest open of a FIFO: %d %q %+v\n%s", rec.Code, rec.Body.String(), o, logs)
	}
}

// TestSnapshotSaveHasDeadline: a finaliser that loops when the snapshot's
// garbage collection runs is stopped at the build's deadline.
func TestSnapshotSaveHasDeadline(t *testing.T) {
	dir := hostileDir(t)
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = store.Build(ctx, testEngine(t), sandbox.AppConfig{App: "loopdel:application", Dir: dir})
	if err == nil {
		t.Fatal("a snapshot whose finaliser loops was built")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the build ended %v after its 3 s deadline", took)
	}
}

// TestCompileAppBounded: compiling a tenant's sources runs under the
// tenant's memory cap and ends at the caller's deadline.
func TestCompileAppBounded(t *testing.T) {
	dir := t.TempDir()
	// 20 MB of source: compiling it needs far more than 64 MiB.
	var b strings.Builder
	for i := 0; b.Len() < 20<<20; i++ {
		fmt.Fprintf(&b, "x%d = [%d, %d, %d, 'some text to make the line longer']\n", i, i, i+1, i+2)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.py"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "small.py"), []byte("x = 1\n"), 0o644)
	eng := testEngine(t)
	start := time.Now()
	pyc, err := eng.CompileApp(context.Background(), dir, 64<<20)
	if err != nil {
		t.Fatalf("CompileApp under a 64 MiB cap: %v", err)
	}
	t.Logf("compiled under a 64 MiB cap in %v", time.Since(start))
	// compileall goes on after big.py fails under the cap: small.py is
	// compiled, big.py is not.
	var compiled []string
	filepath.WalkDir(pyc, func(p string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			compiled = append(compiled, filepath.Base(p))
		}
		return nil
	})
	if len(compiled) != 1 || !strings.HasPrefix(compiled[0], "small.") {
		t.Fatalf("compiled under a 64 MiB cap: %v, want small.py's .pyc only", compiled)
	}
	os.WriteFile(filepath.Join(dir, "small.py"), []byte("x = 2\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := eng.CompileApp(ctx, dir, 0); err == nil {
		t.Fatal("CompileApp of 20 MB of source ended within 200 ms without error")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("CompileApp ended %v after a 200 ms deadline", took)
	}
	// The same sources are not compiled again (a reload's load after its
	// precompile must not wait twice), even with time to spare.
	start = time.Now()
	if _, err := eng.CompileApp(context.Background(), dir, 0); err == nil {
		t.Fatal("sources whose compile passed its deadline compiled on the second try")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the second CompileApp took %v; want the remembered failure at once", took)
	}
}

// dirBytes sums the sizes of the regular files below dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			info, _ := d.Info()
			n += info.Size()
		}
		return nil
	})
	return n
}

// TestDataQuota: writes that would take the data folder past its quota
// fail in the guest with an OSError and a log line, the folder never holds
// more than the quota, and removing files makes room again.
func TestDataQuota(t *testing.T) {
	dir, data := hostileDir(t), t.TempDir()
	const quota = 1 << 20
	eng := testEngine(t)
	logs := &logLines{}
	inst, err := eng.NewInstance(context.Background(), sandbox.AppConfig{App: "filler:application", Dir: dir, DataDir: data, DataMaxBytes: quota, Log: logs.log})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	step := func(query, want string) {
		t.Helper()
		rec, o := do(inst, httptest.NewRequest("GET", "/?"+query, nil), logs)
		if o.Err != nil || !strings.HasPrefix(rec.Body.String(), want) {
			t.Fatalf("%s: %q %+v, want %q\n%s", query, rec.Body.String(), o, want, logs)
		}
		if used := dirBytes(t, data); used > quota {
			t.Fatalf("after %s the data folder holds %d bytes, over its quota of %d", query, used, quota)
		}
	}
	step("write=a:600000", "ok")
	step("write=b:600000", "OSError")
	step("append=a:500000", "OSError")
	step("remove=b", "ok")
	step("write=a:900000", "ok") // rewriting a file frees what it held
	step("remove=a", "ok")
	step("write=c:1000000", "ok")
	step("remove=c", "ok")
	// A rename onto itself frees nothing.
	step("write=a:600000", "ok")
	step("selfrename=a", "ok")
	step("write=b:600000", "OSError")
	step("remove=b", "ok")
	step("remove=a", "ok")
	// A removed file still open holds its bytes until closed.
	step("hold=h:700000", "ok")
	step("write=c:600000", "OSError")
	step("remove=c", "ok")
	step("release", "ok")
	step("write=d:900000", "ok")
	if !strings.Contains(logs.String(), "data folder is full") {
		t.Fatalf("no log line says the data folder is full:\n%s", logs)
	}
	if _, _, refused, ok := eng.DataUsage(data); !ok || refused == 0 {
		t.Fatalf("DataUsage reports %d refusals (ok %v)", refused, ok)
	}
}
