package server

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The front's HTTP rules, all checked by CheckRequest; the README's "HTTP
// rules" table lists them with their statuses and cmd/wsgi-wasm's e2e tests
// send each to the real binary.

// Request limits, as gunicorn's defaults (limit_request_line,
// limit_request_fields, limit_request_field_size). net/http only bounds the
// whole header block (MaxHeaderBytes), so the rest is checked here.
const (
	MaxRequestLine  = 4094 // longer: 414 URI Too Long
	MaxHeaderFields = 100  // more: 431 Request Header Fields Too Large
	MaxFieldSize    = 8190 // a longer name+value: 431
)

// FrontAnswerTimeout bounds reading a request's body when the front
// answers it itself (a refusal, 404, 503): net/http reads what is left of
// the body after the handler, and a client that stalls must not hold the
// connection. A request routed to an app is bounded by its tenant's
// request_timeout instead.
const FrontAnswerTimeout = 10 * time.Second

// CheckRequest applies the front's HTTP rules to r before it is routed; it
// reports whether r may go on, having answered it otherwise. It may
// normalise r: Host lowercased without a trailing dot, the fragment cut
// from the target, r.TLS restored on a FramingListener's TLS connections.
// The framing rules need the server's ConnContext and FramingListener;
// without them (a test server) only the rules visible in r apply. serve's
// Server.ServeHTTP calls it, and run's handler too.
func CheckRequest(w http.ResponseWriter, r *http.Request) bool {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(FrontAnswerTimeout))
	if fc, ok := r.Context().Value(connKey{}).(*framingConn); ok {
		if why := fc.Problem(); why != "" {
			return refuse(w, why)
		}
		if r.TLS == nil {
			r.TLS = fc.tlsState()
		}
	}
	if status, ok := checkLimits(r); !ok {
		http.Error(w, http.StatusText(status), status)
		return false
	}
	switch target := r.RequestURI; {
	case target == "*" && r.Method == http.MethodOptions:
		// "OPTIONS *" asks about the server, not a resource (RFC 9110
		// 9.3.7): answered here, with no Allow, as the methods an app
		// takes are its own.
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return false
	case target == "*":
		return refuse(w, "asterisk-form target with a method other than OPTIONS")
	case strings.ContainsFunc(target, func(c rune) bool { return c <= ' ' || c == 0x7f }):
		return refuse(w, "control character or space in the target")
	case strings.HasPrefix(target, "/"):
	case r.URL.Opaque == "" && r.URL.User == nil && r.URL.Host != "" && (r.URL.Scheme == "http" || r.URL.Scheme == "https"):
		// absolute-form; RFC 9110 4.2.4: userinfo is an error.
	default:
		return refuse(w, "target is neither a path nor an absolute http(s) URL (authority-form is for proxies)")
	}
	if i := strings.IndexByte(r.RequestURI, '#'); i >= 0 {
		// A fragment is the client's own (RFC 9110 7.1); net/http keeps it
		// in the path or query.
		u, err := url.ParseRequestURI(r.RequestURI[:i])
		if err != nil {
			return refuse(w, "malformed target")
		}
		r.URL = u
	}
	if r.URL.Path == "" {
		r.URL.Path = "/" // "http://host" in absolute-form (RFC 9112 3.2.2)
	}
	if len(r.Header["Content-Type"]) > 1 {
		return refuse(w, "more than one Content-Type")
	}
	if len(r.Header["Content-Length"]) > 1 {
		return refuse(w, "more than one Content-Length")
	}
	for name, values := range r.Header {
		for _, v := range values {
			if strings.ContainsFunc(v, isControl) {
				return refuse(w, "control character in the value of "+name)
			}
		}
	}
	host, ok := NormalizeHost(r.Host)
	if !ok {
		return refuse(w, "malformed Host")
	}
	r.Host = host
	return true
}

// FinishBody closes r's body once the app is done, which reads (drains)
// what the app left unread, by the read deadline at the latest. If the body
// cannot be read to its end (the client stalled past the deadline, or cut
// it short), the connection ends after this answer: net/http would
// otherwise keep it open for a next request, waiting out the idle timeout.
func FinishBody(r *http.Request) {
	if r.Body.Close() == nil {
		return
	}
	if fc, ok := r.Context().Value(connKey{}).(*framingConn); ok {
		fc.ended.Store(true)
	}
}

// refuse answers 400 with why and closes the connection after the answer.
func refuse(w http.ResponseWriter, why string) bool {
	w.Header().Set("Connection", "close")
	http.Error(w, "Bad Request: "+why, http.StatusBadRequest)
	return false
}

// isControl reports a control character other than horizontal tab (RFC
// 9110 5.5: field values are VCHAR, obs-text, SP and HTAB).
func isControl(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }

// checkLimits checks gunicorn's request limits, returning the status for a
// request over them.
func checkLimits(r *http.Request) (int, bool) {
	if len(r.Method)+len(r.RequestURI)+len(r.Proto)+2 > MaxRequestLine {
		return http.StatusRequestURITooLong, false
	}
	fields := 0
	for name, values := range r.Header {
		for _, v := range values {
			fields++
			if len(name)+len(v)+2 > MaxFieldSize {
				return http.StatusRequestHeaderFieldsTooLarge, false
			}
		}
	}
	if fields > MaxHeaderFields {
		return http.StatusRequestHeaderFieldsTooLarge, false
	}
	return 0, true
}

// NormalizeHost is the Host the front routes by: lowercased, one trailing
// dot of the name removed ("victim.test." is victim.test, RFC 1034 3.1),
// the port kept. It reports false for a Host that is not a DNS name (letters,
// digits, '-', '_', labels of 1 to 63 characters), an IPv4 address or a
// bracketed IPv6 address, with an optional port. An empty Host (HTTP/1.0)
// stays empty.
func NormalizeHost(h string) (string, bool) {
	if h == "" {
		return "", true
	}
	h = strings.ToLower(h)
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", false
		}
		if ip := net.ParseIP(h[1:end]); ip == nil || !strings.Contains(h[1:end], ":") {
			return "", false
		}
		name, port = h[:end+1], h[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return "", false
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i:]
	}
	if port != "" {
		digits := port[1:]
		if len(digits) == 0 || len(digits) > 5 || strings.ContainsFunc(digits, func(c rune) bool { return c < '0' || c > '9' }) {
			return "", false
		}
	}
	if strings.HasPrefix(name, "[") {
		return name + port, true
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return "", false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return name + port, true
}
