package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// AccessLog writes one line per request in gunicorn's default
// access_log_format, followed by the tenant's name and the seconds the
// request took:
//
//	%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" TENANT SECONDS
//	203.0.113.7 - - [02/Jan/2006:15:04:05 +0000] "GET /x?a=1 HTTP/1.1" 200 12 "-" "curl/8.5.0" shop 0.003125
//
// Quotes and control characters in the request line, referer and user
// agent are escaped, so a client cannot forge a line. A nil *AccessLog
// writes nothing.
type AccessLog struct {
	mu sync.Mutex
	w  io.Writer
}

// NewAccessLog writes lines to w; a nil w gives a nil *AccessLog.
func NewAccessLog(w io.Writer) *AccessLog {
	if w == nil {
		return nil
	}
	return &AccessLog{w: w}
}

// Handler serves next and logs each request under tenant (`run`'s one app).
func (a *AccessLog) Handler(tenant string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		a.Log(r, "", tenant, sw.status, sw.bytes, time.Since(start))
	})
}

// Log writes r's line. client is the client's address when a trusted proxy
// named it, else "" for r.RemoteAddr; tenant is "-" when none matched.
func (a *AccessLog) Log(r *http.Request, client, tenant string, status int, bytes int64, d time.Duration) {
	if a == nil {
		return
	}
	if client == "" {
		client = r.RemoteAddr
	}
	if h, _, err := net.SplitHostPort(client); err == nil {
		client = h
	}
	user := "-"
	if u, _, ok := r.BasicAuth(); ok && u != "" {
		user = escape(u)
	}
	if status == 0 {
		status = http.StatusOK
	}
	line := fmt.Sprintf("%s - %s [%s] \"%s\" %d %d \"%s\" \"%s\" %s %.6f\n",
		client, user, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
		escape(r.Method+" "+r.RequestURI+" "+r.Proto), status, bytes,
		orDash(escape(r.Referer())), orDash(escape(r.UserAgent())), tenant, d.Seconds())
	a.mu.Lock()
	defer a.mu.Unlock()
	io.WriteString(a.w, line)
}

// escape quotes s as a Go string does, without the outer quotes.
func escape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
