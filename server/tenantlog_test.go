package server_test

import (
	"bytes"
	"context"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
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

// TestTenantLogRateLimit: a tenant that writes 1000 records at once gets
// its burst through; the rest are dropped and counted in one warning at
// the end of the report interval, however many more are dropped within it.
func TestTenantLogRateLimit(t *testing.T) {
	defer server.SetDropReportInterval(300 * time.Millisecond)()
	rec := &records{}
	log := server.NewTenantLog(slog.New(rec), nil)
	for i := 0; i < 1000; i++ {
		log(slog.LevelInfo, []byte("noise"))
	}
	rec.mu.Lock()
	n := len(rec.list)
	rec.mu.Unlock()
	// The burst, plus 50 lines a second for however long the loop took
	// (4 s on the slowest machine allowed for).
	if n < 200 || n > 400 {
		t.Fatalf("%d of 1000 lines logged; want about the burst of 200", n)
	}
	warnings := func() (w []slog.Record) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, r := range rec.list {
			if r.Level == slog.LevelWarn {
				w = append(w, r)
			}
		}
		return w
	}
	if w := warnings(); len(w) != 0 {
		t.Fatalf("a warning before the interval's end: %q", w[0].Message)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(warnings()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no warning of the dropped records within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // no second warning comes
	w := warnings()
	if len(w) != 1 || attr(w[0], "dropped") != int64(1000-n) || attr(w[0], "dropped_bytes") != int64(5*(1000-n)) {
		t.Fatalf("%d warnings, the first dropped=%v dropped_bytes=%v; want one, %d records, %d bytes",
			len(w), attr(w[0], "dropped"), attr(w[0], "dropped_bytes"), 1000-n, 5*(1000-n))
	}
	log(slog.LevelError, []byte("after"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if last := rec.list[len(rec.list)-1]; last.Message != "after" || last.Level != slog.LevelError || attr(last, "source") != "guest" {
		t.Fatalf("after the burst: %q at %v", last.Message, last.Level)
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

// TestTenantLogByteLimit: lines of sandbox.MaxLogLine bytes pass until the
// byte burst is spent, well within the line burst; the rest are dropped,
// and the warning counts them in lines and bytes.
func TestTenantLogByteLimit(t *testing.T) {
	defer server.SetDropReportInterval(200 * time.Millisecond)()
	rec := &records{}
	log := server.NewTenantLog(slog.New(rec), nil)
	line := bytes.Repeat([]byte("b"), sandbox.MaxLogLine)
	const sent = 100 // under the line burst of 200
	for i := 0; i < sent; i++ {
		log(slog.LevelInfo, line)
	}
	rec.mu.Lock()
	passed := len(rec.list)
	rec.mu.Unlock()
	if burst := 512 << 10 / sandbox.MaxLogLine; passed < burst || passed > burst+8 {
		t.Fatalf("%d of %d lines of %d bytes logged; want about the byte burst's %d", passed, sent, len(line), burst)
	}
	// The report counts every record dropped, in records and bytes.
	var warn slog.Record
	deadline := time.Now().Add(10 * time.Second)
	for warn.Message == "" {
		if time.Now().After(deadline) {
			t.Fatal("no warning within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
		rec.mu.Lock()
		if len(rec.list) > passed {
			warn = rec.list[passed]
		}
		rec.mu.Unlock()
	}
	dropped := int64(sent - passed)
	if warn.Level != slog.LevelWarn || attr(warn, "dropped") != dropped || attr(warn, "dropped_bytes") != dropped*int64(len(line)) {
		t.Fatalf("warning %q dropped=%v dropped_bytes=%v; want %d lines, %d bytes",
			warn.Message, attr(warn, "dropped"), attr(warn, "dropped_bytes"), dropped, dropped*int64(len(line)))
	}
}

// TestFormatTenantRecord: a record of a tenant's file is one line with
// its time and level, a message of several lines continues on indented
// lines, and control characters are escaped.
func TestFormatTenantRecord(t *testing.T) {
	at := time.Date(2026, 12, 5, 14, 3, 7, 250e6, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		level slog.Level
		msg   string
		want  string
	}{
		{slog.LevelInfo, "hello", "2026-12-05T13:03:07.250Z INFO hello\n"},
		{slog.LevelError, "boom\nTraceback (most recent call last):\n  File \"/app/app.py\", line 3\nZeroDivisionError: x\n",
			"2026-12-05T13:03:07.250Z ERROR boom\n  Traceback (most recent call last):\n    File \"/app/app.py\", line 3\n  ZeroDivisionError: x\n"},
		{slog.LevelWarn, "a\r\nb\tc\x1b[31mred\x00\xff", "2026-12-05T13:03:07.250Z WARN a\n  b\tc\\x1b[31mred\\x00\ufffd\n"},
		{slog.LevelDebug, "", "2026-12-05T13:03:07.250Z DEBUG \n"},
	} {
		if got := string(server.FormatTenantRecord(nil, at, c.level, []byte(c.msg))); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.msg, got, c.want)
		}
	}
}

// TestRotatingFile: a write that would take the file past its maximum
// moves it to .1 (replacing the one before) and starts a new file; a
// reopened file appends; a symbolic link is refused.
func TestRotatingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shop.log")
	f, err := server.OpenRotatingFile(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("a", 39) + "\n") // 40 bytes
	for i := 0; i < 2; i++ {
		f.Write(line)
	}
	f.Close()
	if f, err = server.OpenRotatingFile(path, 100); err != nil {
		t.Fatal(err)
	}
	size := func(p string) int {
		st, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return int(st.Size())
	}
	for _, c := range []struct {
		write      string
		cur, older int
	}{
		{"", 80, -1}, // reopened: appends
		{string(line), 40, 80},
		{string(line), 80, 80},
		{strings.Repeat("b", 300), 300, 80}, // longer than the maximum: alone in a file
		{"c", 1, 300},
	} {
		if c.write != "" {
			if _, err := f.Write([]byte(c.write)); err != nil {
				t.Fatal(err)
			}
		}
		if size(path) != c.cur || size(path+".1") != c.older {
			t.Fatalf("after writing %d bytes: %d and %d bytes; want %d and %d", len(c.write), size(path), size(path+".1"), c.cur, c.older)
		}
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Fatalf("a third file: %v", err)
	}
	f.Close()
	if _, err := f.Write([]byte("late")); err == nil || size(path) != 1 {
		t.Fatalf("a write after Close: %v, %d bytes", err, size(path))
	}
	link := filepath.Join(filepath.Dir(path), "link.log")
	os.Symlink(path, link)
	if _, err := server.OpenRotatingFile(link, 100); err == nil {
		t.Fatal("a symbolic link opened as a tenant log")
	}
}

const loggingApp = `
import logging, sys

logging.basicConfig(level=logging.DEBUG)
log = logging.getLogger("shop")


def application(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        1 / 0
    log.debug("dbg")
    log.info("inf")
    log.warning("wrn")
    log.error("err")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("caught")
    sys.stderr.write("plain stderr\n")
    environ["wsgi.errors"].write("to wsgi.errors\n")
    print("to stdout")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
`

// TestTenantLogFile: with a tenant log folder, each tenant's records go to
// its own file at the level the app logged (Python logging records at
// theirs, plain stderr and wsgi.errors as warnings, stdout as information),
// a traceback as one record on several lines; why a tenant's instance did
// not start is in its file; and every guest record of the server's log names its tenant.
func TestTenantLogFile(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{
		"shop":   "app = \"app:application\"\nhosts = [\"shop.test\"]\n",
		"broken": "app = \"missing_module:app\"\nhosts = [\"broken.test\"]\n",
	})
	os.WriteFile(filepath.Join(root, "shop", "app.py"), []byte(loggingApp), 0o644)
	logDir := filepath.Join(t.TempDir(), "logs")
	var serverLog testlog.Buffer
	srv, err := server.New(context.Background(), eng, server.Config{
		TenantDir: root, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 30, TenantLogDir: logDir,
		Logger: slog.New(slog.NewTextHandler(&serverLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, url := range []string{"http://shop.test/log", "http://shop.test/boom", "http://broken.test/"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", url, nil)
		srv.ServeHTTP(rec, req)
	}
	b, err := os.ReadFile(filepath.Join(logDir, "shop.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The time of each record is left out.
	var got []string
	for _, rec := range regexp.MustCompile(`(?m)^\S+ `).Split(string(b), -1)[1:] {
		got = append(got, rec)
	}
	text := strings.Join(got, "")
	for _, want := range []string{
		"DEBUG DEBUG:shop:dbg\n",
		"INFO INFO:shop:inf\n",
		"WARN WARNING:shop:wrn\n",
		"ERROR ERROR:shop:err\n",
		"ERROR ERROR:shop:caught\n  Traceback (most recent call last):\n    File \"/app/app.py\", line 16, in application\n      1 / 0\n      ~~^~~\n  ZeroDivisionError: division by zero\n",
		"WARN plain stderr\n",
		"WARN to wsgi.errors\n",
		"INFO to stdout\n",
		"ERROR unhandled exception in app\n  Traceback (most recent call last):\n",
	} {
		if !slices.Contains(got, want) && !(strings.HasSuffix(want, "(most recent call last):\n") && strings.Contains(text, want)) {
			t.Errorf("shop.log lacks the record %q; it holds:\n%s", want, b)
		}
	}
	if b, err := os.ReadFile(filepath.Join(logDir, "broken.log")); err != nil || !strings.Contains(string(b), "ERROR wsgi-wasm: instance failed to start\n  app: missing_module:app\n  err: sandbox: wsgi_init") ||
		!strings.Contains(string(b), "ERROR Traceback (most recent call last):\n  ") || !strings.Contains(string(b), "\n  ModuleNotFoundError: No module named 'missing_module'\n") {
		t.Errorf("broken.log: %v\n%s", err, b)
	}
	guest := 0
	for _, line := range strings.Split(serverLog.String(), "\n") {
		if strings.Contains(line, "source=guest") {
			guest++
			if !strings.Contains(line, "tenant=shop") && !strings.Contains(line, "tenant=broken") {
				t.Errorf("a guest record without its tenant: %s", line)
			}
		}
	}
	if guest < 9 {
		t.Errorf("%d guest records in the server's log; want 9:\n%s", guest, serverLog.String())
	}
}
