package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// Each tenant may log this many lines a second (with this burst), and this
// many bytes a second (with this burst); beyond either, lines are counted
// and dropped, so a noisy tenant cannot flood the host's log. The byte rate
// lets the line rate through at lines of about 1 KiB (a traceback line or a
// request dump); only longer lines meet it. One record is at most
// sandbox.MaxLogLine bytes and its marker, well under the byte burst.
const (
	tenantLogRate      = 50
	tenantLogBurst     = 200
	tenantLogByteRate  = 64 << 10
	tenantLogByteBurst = 512 << 10
)

// tenantLogDropReport is how often at most a tenant's dropped records are
// reported: one warning with their count at the end of each interval in
// which some were dropped.
var tenantLogDropReport = 5 * time.Second

// DefaultTenantLogMaxBytes is the size at which a tenant's log file
// (Config.TenantLogDir) is rotated: the file and the one before it are kept.
const DefaultTenantLogMaxBytes = 10 << 20

// NewTenantLog turns the guest's records (stdout, stderr, wsgi.errors,
// logging records, tracebacks) into records of log (which names the
// tenant), marked source=guest, and, if file is not nil, into the
// tenant's own log file (FormatTenantRecord). At most tenantLogRate records
// and tenantLogByteRate bytes a second pass, after bursts of tenantLogBurst
// records and tenantLogByteBurst bytes; the others are dropped and counted
// (records and bytes) in one warning at the end of each
// tenantLogDropReport in which some were.
func NewTenantLog(log *slog.Logger, file io.Writer) sandbox.GuestLog {
	t := &tenantLog{
		log: log, file: file,
		lines: rate.NewLimiter(tenantLogRate, tenantLogBurst),
		bytes: rate.NewLimiter(tenantLogByteRate, tenantLogByteBurst),
	}
	return t.write
}

type tenantLog struct {
	log          *slog.Logger
	file         io.Writer
	lines, bytes *rate.Limiter

	mu                    sync.Mutex
	dropped, droppedBytes int64
	reporting             bool // a report is scheduled
}

func (t *tenantLog) write(level slog.Level, msg []byte) {
	now := time.Now()
	// A line dropped for its bytes has used its line token: a tenant
	// sending long lines slows its short ones too.
	if !t.lines.AllowN(now, 1) || !t.bytes.AllowN(now, len(msg)) {
		t.drop(len(msg))
		return
	}
	t.log.Log(context.Background(), level, string(msg), "source", "guest")
	if t.file != nil {
		t.file.Write(FormatTenantRecord(nil, now, level, msg))
	}
}

// drop counts a dropped record, and schedules the interval's report if it
// is the interval's first.
func (t *tenantLog) drop(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped++
	t.droppedBytes += int64(n)
	if !t.reporting {
		t.reporting = true
		time.AfterFunc(tenantLogDropReport, t.report)
	}
}

func (t *tenantLog) report() {
	t.mu.Lock()
	n, b := t.dropped, t.droppedBytes
	t.dropped, t.droppedBytes, t.reporting = 0, 0, false
	t.mu.Unlock()
	const msg = "tenant log records dropped by the rate limit"
	t.log.Warn(msg, "dropped", n, "dropped_bytes", b, "interval", tenantLogDropReport)
	if t.file != nil {
		line := fmt.Sprintf("wsgi-wasm: %s: %d records (%d bytes) in %v; the limit is %d records and %d KiB a second, after bursts of %d records and %d KiB",
			msg, n, b, tenantLogDropReport, tenantLogRate, tenantLogByteRate>>10, tenantLogBurst, tenantLogByteBurst>>10)
		t.file.Write(FormatTenantRecord(nil, time.Now(), slog.LevelWarn, []byte(line)))
	}
}

// FormatTenantRecord appends one record of a tenant's log file to dst: the
// time (UTC, RFC 3339 with milliseconds), the level and the message, whose
// further lines (a traceback's) follow, each indented by two spaces; so a
// line that does not start with a space starts a record. Control
// characters other than tab are written as \xNN (a tenant cannot send
// terminal escapes to whoever reads the file), and invalid UTF-8 as U+FFFD.
func FormatTenantRecord(dst []byte, at time.Time, level slog.Level, msg []byte) []byte {
	dst = at.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = append(dst, ' ')
	dst = append(dst, level.String()...)
	dst = append(dst, ' ')
	for len(msg) > 0 && (msg[len(msg)-1] == '\n' || msg[len(msg)-1] == '\r') {
		msg = msg[:len(msg)-1]
	}
	for len(msg) > 0 {
		r, size := utf8.DecodeRune(msg)
		switch {
		case r == '\n':
			dst = append(dst, "\n  "...)
		case r == '\r' && len(msg) > 1 && msg[1] == '\n':
			// CRLF: the LF makes the line.
		case r == utf8.RuneError && size == 1:
			dst = utf8.AppendRune(dst, utf8.RuneError)
		case r == '\t' || (r >= 0x20 && r != 0x7f && (r < 0x80 || r > 0x9f)):
			dst = append(dst, msg[:size]...)
		default:
			dst = fmt.Appendf(dst, `\x%02x`, r)
		}
		msg = msg[size:]
	}
	return append(dst, '\n')
}

// tenantFiles are the tenants' log files in one folder: <dir>/<tenant>.log,
// opened on first use and kept open across reloads.
type tenantFiles struct {
	dir string
	max int64
	log *slog.Logger

	mu    sync.Mutex
	files map[string]*RotatingFile
}

// file is the tenant's log file, or nil (and an error logged once per
// tenant) if it cannot be opened.
func (f *tenantFiles) file(tenant string) *RotatingFile {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.files[tenant]; ok {
		return r
	}
	r, err := OpenRotatingFile(filepath.Join(f.dir, tenant+".log"), f.max)
	if err != nil {
		f.log.Error("tenant log file not opened; the tenant's records go to the server's log only", "tenant", tenant, "err", err)
	}
	f.files[tenant] = r
	return r
}

// logger is the server's logger for a tenant's records (tenant=name):
// with files, those from WARN up also go to the tenant's file, marked
// "wsgi-wasm:" (why it did not load, why an instance failed to start).
func (f *tenantFiles) logger(log *slog.Logger, tenant string) *slog.Logger {
	log = log.With("tenant", tenant)
	if f == nil {
		return log
	}
	file := f.file(tenant)
	if file == nil {
		return log
	}
	return slog.New(&teeHandler{next: log.Handler(), file: file})
}

// teeHandler passes every record to next and writes those from WARN up to
// file, with their attributes (but the tenant's name) on lines of their own.
type teeHandler struct {
	next  slog.Handler
	file  io.Writer
	attrs []slog.Attr
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		msg := []byte("wsgi-wasm: " + r.Message)
		add := func(a slog.Attr) bool {
			if a.Key != "tenant" && !a.Equal(slog.Attr{}) {
				msg = fmt.Appendf(msg, "\n%s: %s", a.Key, a.Value.Resolve().String())
			}
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		h.file.Write(FormatTenantRecord(nil, r.Time, r.Level, msg))
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &teeHandler{next: h.next.WithAttrs(attrs), file: h.file, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{next: h.next.WithGroup(name), file: h.file, attrs: h.attrs}
}

func (f *tenantFiles) close() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.files {
		if r != nil {
			r.Close()
		}
	}
}

// RotatingFile is a log file of bounded size: a write that would take it
// past its maximum first renames it to <path>.1 (replacing the one before)
// and starts a new one, so the two hold at most twice the maximum and one
// write.
type RotatingFile struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File // nil after a failed rotation: the next write opens it
	size   int64
	closed bool
}

// OpenRotatingFile opens (appends to) or creates path, readable by its
// owner and group; a symbolic link there is refused.
func OpenRotatingFile(path string, max int64) (*RotatingFile, error) {
	r := &RotatingFile{path: path, max: max}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("server: tenant log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("server: tenant log: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would take the file past its
// maximum (an empty file takes p whatever its size).
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, os.ErrClosed // a report scheduled before the server closed
	}
	if r.f != nil && r.size > 0 && r.size+int64(len(p)) > r.max {
		r.f.Close()
		r.f = nil
		if err := os.Rename(r.path, r.path+".1"); err != nil && !os.IsNotExist(err) {
			return 0, fmt.Errorf("server: tenant log: %w", err)
		}
	}
	if r.f == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
