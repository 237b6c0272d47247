package server

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

type route struct {
	host   string // exact, "*.suffix" or "*"
	prefix string
	name   string
}

// hostRank orders exact hosts before wildcards before the catch-all, and
// longer wildcards before shorter ones.
func hostRank(h string) int {
	switch {
	case h == "*":
		return 0
	case strings.HasPrefix(h, "*."):
		return 1 + len(h)
	default:
		return 1 << 20
	}
}

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:])
	default:
		return pattern == host
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	tenant := s.serve(sw, r)
	// The instance (if any) is back in its pool: what the app left unread
	// is drained here (full duplex needs the body closed, see
	// pool.ServeInstance), by the read deadline.
	FinishBody(r)
	client := ""
	if tenant != "-" {
		client = s.requestInfo(r, "").RemoteAddr
	}
	s.access.Log(r, client, tenant, sw.status, sw.bytes, time.Since(start))
}

// serve answers r and returns the name of the tenant that matched, or "-".
func (s *Server) serve(w *statusWriter, r *http.Request) string {
	if !CheckRequest(w, r) {
		return "-"
	}
	host := r.Host // normalised by CheckRequest
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	s.mu.RLock()
	var match *route
	for i := range s.routes {
		rt := &s.routes[i]
		if hostMatches(rt.host, host) && tenants.PathUnder(r.URL.Path, rt.prefix) {
			match = rt
			break
		}
	}
	why, broken := s.broken[host]
	var l *loaded
	if match != nil && !(broken && match.host != host) {
		l = s.tenants[match.name]
		l.inFlight.Add(1)
	}
	s.mu.RUnlock()
	if l == nil {
		if broken {
			s.log.Warn("request for a tenant that failed to load", "host", host, "why", why)
			w.Header().Set("Retry-After", "5")
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
			return "-"
		}
		http.NotFound(w, r)
		return "-"
	}
	defer l.inFlight.Done()
	// The body (and what net/http drains of it after the answer) is read
	// by the tenant's deadline at the latest, so a stalled client cannot
	// hold the connection past it.
	if d := l.tenant.Policy.RequestTimeout; d > 0 {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	}
	if len(l.tenant.Static) > 0 && serveStatic(w, r, l.tenant.Dir, match.prefix, l.tenant.Static) {
		return match.name
	}
	// The policy's limit as it reads: 0 takes no body at all.
	if r.ContentLength > l.tenant.Policy.MaxBodyBytes {
		pool.Fail(w, pool.ErrBodyTooLarge)
		return match.name
	}
	// The net/http writer itself, so that passing the limit also ends the
	// connection after the reply.
	r.Body = http.MaxBytesReader(w.ResponseWriter, r.Body, l.tenant.Policy.MaxBodyBytes)
	start := time.Now()
	inFlight := s.metrics.inFlight.WithLabelValues(match.name)
	inFlight.Inc()
	o := s.warm.Serve(l.key, l.app, l.pool, w, r, s.requestInfo(r, match.prefix), l.guestLg)
	if o.ClientError != nil {
		s.log.Warn("request body incomplete (the client's error; a failing app's answer became 400)", "tenant", match.name, "err", o.ClientError)
	}
	inFlight.Dec()
	s.metrics.observe(match.name, w.status, time.Since(start), o)
	return match.name
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines, full duplex).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestInfo says how the client reached us: the scheme and peer address,
// from X-Forwarded-* only when the direct peer is a trusted proxy.
func (s *Server) requestInfo(r *http.Request, scriptName string) pool.RequestInfo {
	info := pool.RequestInfo{ScriptName: scriptName, Scheme: "http"}
	if r.TLS != nil {
		info.Scheme = "https"
	}
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || !s.trusted(peer) {
		return info
	}
	if fwd := r.Header.Get("X-Forwarded-For"); fwd != "" {
		client := strings.TrimSpace(strings.Split(fwd, ",")[0])
		if ip := net.ParseIP(client); ip != nil {
			info.RemoteAddr = net.JoinHostPort(ip.String(), "0")
		}
	}
	switch strings.ToLower(r.Header.Get("X-Forwarded-Proto")) {
	case "https":
		info.Scheme = "https"
	case "http":
		info.Scheme = "http"
	}
	return info
}

func (s *Server) trusted(peer string) bool {
	for _, a := range s.cfg.ForwardedAllowIPs {
		if a == "*" || a == peer {
			return true
		}
	}
	return false
}
