package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// RequestInfo is what the HTTP front knows about a request beyond
// *http.Request: where the app is mounted and how the client reached us.
type RequestInfo struct {
	// ScriptName is the path prefix the app is mounted at ("" for the root);
	// it becomes SCRIPT_NAME and is cut from PATH_INFO.
	ScriptName string
	// Scheme is "http" or "https" as the client used it.
	Scheme string
	// RemoteAddr overrides r.RemoteAddr (e.g. from a trusted proxy header).
	RemoteAddr string
}

// BuildEnviron encodes the CGI variables of r for request_environ
// (ABI.md "request_environ"; PEP 3333 "environ Variables"), appending to dst.
func BuildEnviron(dst []byte, r *http.Request, info RequestInfo) ([]byte, error) {
	path := r.URL.Path
	if r.URL.RawPath != "" {
		// Percent-decoded, as CGI wants, even where Go kept the raw form.
		if p, err := url.PathUnescape(r.URL.RawPath); err == nil {
			path = p
		}
	}
	pathInfo := strings.TrimPrefix(path, info.ScriptName)
	host, port := splitHostPort(r.Host, info.Scheme)
	remote := info.RemoteAddr
	if remote == "" {
		remote = r.RemoteAddr
	}
	remoteHost, remotePort, err := net.SplitHostPort(remote)
	if err != nil {
		remoteHost, remotePort = remote, ""
	}
	contentLength := ""
	if r.ContentLength >= 0 && !(r.ContentLength == 0 && r.Body == http.NoBody && r.Header.Get("Content-Length") == "") {
		contentLength = strconv.FormatInt(r.ContentLength, 10)
	}
	scheme := info.Scheme
	if scheme == "" {
		scheme = "http"
	}
	pairs := []string{
		"REQUEST_METHOD", r.Method,
		"SCRIPT_NAME", info.ScriptName,
		"PATH_INFO", pathInfo,
		"QUERY_STRING", r.URL.RawQuery,
		"CONTENT_TYPE", r.Header.Get("Content-Type"),
		"CONTENT_LENGTH", contentLength,
		"SERVER_NAME", host,
		"SERVER_PORT", port,
		"SERVER_PROTOCOL", r.Proto,
		"REMOTE_ADDR", remoteHost,
		"REMOTE_PORT", remotePort,
		"wsgi.url_scheme", scheme,
		"HTTP_HOST", r.Host,
	}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key, ok := cgiHeaderKey(name)
		if !ok {
			continue
		}
		values := r.Header[name]
		sep := ", "
		if key == "HTTP_COOKIE" {
			sep = "; " // RFC 9110 5.3: cookies are joined with "; "
		}
		pairs = append(pairs, key, strings.Join(values, sep))
	}
	return hostabi.EncodeEnviron(dst, pairs...)
}

// cgiHeaderKey maps a header name to its HTTP_* key. Headers with "_" are
// dropped (they would collide with "-" after the mapping, a known spoofing
// trick); Content-Type/-Length and Host have their own keys.
func cgiHeaderKey(name string) (string, bool) {
	if strings.IndexByte(name, '_') >= 0 {
		return "", false
	}
	switch http.CanonicalHeaderKey(name) {
	case "Content-Type", "Content-Length", "Host":
		return "", false
	}
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")), true
}

func splitHostPort(hostport, scheme string) (string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return host, port
}

// httpResponder sends a guest's response through an http.ResponseWriter,
// flushing each chunk so the client has it before the app yields the next,
// but for the chunk that completes a body of declared length: that one waits
// for Settle, at the guest's next check-in or wait or after its call, so
// that the socket's write is not on the instance's time (pool/README.md,
// "The last chunk").
type httpResponder struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	body *bodyReader
	// replaced is set when the host answered in the app's stead; the app's
	// body is then dropped.
	replaced bool
	// declared is the response's Content-Length as net/http reads it, or -1;
	// written counts the body bytes written.
	declared, written int64
	// held is set while the body's last chunk waits for Settle.
	held bool
}

// bodyReader reads the request body without blocking past the context's
// deadline: through the connection's read deadline where the ResponseWriter
// supports one, else by reading in a goroutine into a private buffer (never
// into guest memory, which may be gone when that read returns).
type bodyReader struct {
	ctx       context.Context
	r         io.Reader
	rc        *http.ResponseController
	declared  int64 // Content-Length, or -1
	got       int64
	prepared  bool
	fallback  bool
	tooLarge  bool  // a read passed the tenant's body limit (http.MaxBytesReader)
	clientErr error // the client's fault: the body ended early or was malformed
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.read(p)
	b.got += int64(n)
	if deadline, ok := b.ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's read deadline is the request's: let the
		// context catch up (microseconds), so that input_read stops the
		// guest (504) rather than failing the read for the app.
		t := time.NewTimer(time.Until(deadline) + 50*time.Millisecond)
		select {
		case <-b.ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	var limit *http.MaxBytesError
	switch {
	case err == nil || err == io.EOF:
	case errors.As(err, &limit):
		b.tooLarge = true
	case b.ctx.Err() == nil && b.clientErr == nil:
		// Not the deadline (the guest is stopped then): the connection
		// ended or the framing was wrong.
		if errors.Is(err, io.ErrUnexpectedEOF) && b.declared >= 0 {
			b.clientErr = fmt.Errorf("pool: the client sent %d bytes of the %d its Content-Length declared: %w", b.got, b.declared, err)
		} else {
			b.clientErr = fmt.Errorf("pool: reading the request body after %d bytes: %w", b.got, err)
		}
	}
	return n, err
}

func (b *bodyReader) read(p []byte) (int, error) {
	if !b.prepared {
		b.prepared = true
		if deadline, ok := b.ctx.Deadline(); ok {
			if err := b.rc.SetReadDeadline(deadline); err != nil {
				b.fallback = true
			}
		}
	}
	if !b.fallback {
		return b.r.Read(p)
	}
	type result struct {
		n   int
		err error
	}
	// The guest chooses len(p): the host's buffer does not follow it.
	buf := make([]byte, min(len(p), maxFallbackRead))
	done := make(chan result, 1)
	go func() {
		n, err := b.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return copy(p, buf[:res.n]), res.err
	case <-b.ctx.Done():
		return 0, context.Cause(b.ctx)
	}
}

// maxFallbackRead bounds the host buffer of one read without a read
// deadline; a longer read returns fewer bytes, as io.Reader may.
const maxFallbackRead = 64 << 10

// clientFailure is the client's error in its body, for an app that failed
// after it (ErrBodyTooLarge past the limit, ErrClientBody cut short or
// malformed), or nil.
func (b *bodyReader) clientFailure() error {
	switch {
	case b.tooLarge:
		return ErrBodyTooLarge
	case b.clientErr != nil:
		return ErrClientBody
	}
	return nil
}

func (h *httpResponder) Start(status int, headers []hostabi.Header) error {
	if status >= 500 {
		if err := h.body.clientFailure(); err != nil {
			// The app failed reading a body past the tenant's limit
			// (chunked, so not refused up front) or one the client cut
			// short: that is the client's error.
			h.replaced = true
			Fail(h.w, err)
			return nil
		}
	}
	hdr := h.w.Header()
	for _, kv := range headers {
		hdr.Add(kv.Name, kv.Value)
	}
	h.w.WriteHeader(status)
	// The length net/http holds the body to: a valid Content-Length header.
	h.declared = -1
	if n, err := strconv.ParseInt(hdr.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		h.declared = n
	}
	return nil
}

func (h *httpResponder) Write(p []byte) error {
	if h.replaced {
		return nil
	}
	if _, err := h.w.Write(p); err != nil {
		return err
	}
	h.written += int64(len(p))
	if h.declared >= 0 && h.written == h.declared {
		h.held = true
		return nil
	}
	return h.rc.Flush()
}

// Settle flushes the body's last chunk if Write held it back. A failure is
// the client's, after the app gave the whole body: nothing is left for the
// app to do about it.
func (h *httpResponder) Settle() {
	if h.held {
		h.held = false
		_ = h.rc.Flush()
	}
}

// Outcome is how a request ended: the instance's call (the handle result;
// a trap, exit or deadline; the guest's time), or the failure that kept the
// request from an instance, and the client's part.
type Outcome struct {
	sandbox.Outcome
	// ClientError is why the request body could not be read in full when
	// that was the client's fault (it sent fewer bytes than it declared,
	// a malformed chunk, a reset); an app that failed on it was answered
	// 400.
	ClientError error
}

// failed is the outcome of a request that got no instance.
func failed(err error) Outcome { return Outcome{Outcome: sandbox.Outcome{Err: err}} }

// ServeInstance runs r through inst and writes the response to w: the HTTP
// adapter of one instance, without a pool (tests and benchmarks drive
// instances with it). A failure before the response's headers is answered
// with its Status; the reason of a refused response goes to log.
func ServeInstance(inst *sandbox.Instance, w http.ResponseWriter, r *http.Request, info RequestInfo, log sandbox.GuestLog) Outcome {
	o, sent := serveInstance(inst, w, r, info, log)
	sent()
	return o
}

// serveInstance is ServeInstance but for the flush of the response's last
// chunk: the caller frees the instance, then calls sent, and only then uses
// w again or returns from its handler.
func serveInstance(inst *sandbox.Instance, w http.ResponseWriter, r *http.Request, info RequestInfo, log sandbox.GuestLog) (o Outcome, sent func()) {
	env, err := BuildEnviron(nil, r, info)
	if err != nil {
		Fail(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return Outcome{Outcome: sandbox.Outcome{Result: hostabi.HandleOK}}, func() {}
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	// PEP 3333 lets an app read its input after it started the response;
	// net/http allows that on HTTP/1.1 only when asked.
	// With full duplex, net/http panics reading the next request on the
	// connection if the handler leaves the body unread and open
	// (golang/go#68560): the caller closes it, after releasing the instance
	// (closing drains what the client still sends).
	rc.EnableFullDuplex()
	if r.Body == nil { // a request made by the host (a warm-up), not read off a connection
		r.Body = http.NoBody
	}
	// The read deadline set here stays after the app returns, so that
	// what net/http drains of the body ends by the deadline too.
	body := &bodyReader{ctx: ctx, r: r.Body, rc: rc, declared: r.ContentLength}
	resp := &httpResponder{w: w, rc: rc, body: body, declared: -1}
	sent = resp.Settle
	if deadline, ok := ctx.Deadline(); ok {
		// A stalled client must not hold the guest, nor the last flush,
		// past its deadline.
		rc.SetWriteDeadline(deadline)
		sent = func() {
			resp.Settle()
			rc.SetWriteDeadline(time.Time{})
		}
	}
	x := &hostabi.Exchange{Environ: env, Body: body, Response: resp}
	o = Outcome{Outcome: inst.Serve(ctx, x, log), ClientError: body.clientErr}
	refused := x.Refused()
	if refused != nil && log != nil {
		log(slog.LevelError, fmt.Appendf(nil, "wsgi-wasm: 502 Bad Gateway: the app's response was refused: %v", refused))
	}
	if o.Err != nil {
		if !x.HeadersSent() {
			failure := o.Err
			if r.Context().Err() != nil {
				failure = fmt.Errorf("%w: %w", sandbox.ErrDeadline, o.Err)
			}
			Fail(w, failure)
		}
		return o, sent
	}
	if refused != nil {
		Fail(w, fmt.Errorf("%w: %w", ErrRefused, refused))
		return o, sent
	}
	if started, _ := x.Finish(); !started {
		failure := body.clientFailure()
		if failure == nil {
			failure = ErrAppException
		}
		Fail(w, failure)
	}
	return o, sent
}
