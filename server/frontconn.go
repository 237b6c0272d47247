package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The front's connections. net/http hides some framing from its handlers:
// with both Transfer-Encoding: chunked and Content-Length it deletes
// Content-Length (transfer.go, fixLength) and the header map never shows
// it; it drops Transfer-Encoding from an HTTP/1.0 request and ignores it
// (parseTransferEncoding); it joins a folded (obs-fold) line into one value
// and accepts lines that end in a bare LF (net/textproto); it merges two
// equal Content-Length fields into one. So each connection's bytes pass
// through a framingConn, which follows the request stream as net/http
// frames it (heads, Content-Length and chunked bodies) and, at the first
// thing it refuses, hands net/http the bytes up to the end of that head
// (or up to the bad chunk line) and then end of file: the refused request
// is answered 400 by CheckRequest, the connection is closed, and no byte
// after it is ever read as a request. See the README's table of the HTTP
// rules.

// connKey is the context key of the request's *framingConn (ConnContext).
type connKey struct{}

// ConnContext is the front's http.Server.ConnContext: it lets CheckRequest
// find the connection's framing checks (and its TLS state) from a request.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, connKey{}, fc)
	}
	return ctx
}

// frontListener wraps every accepted connection in a framingConn.
type frontListener struct{ net.Listener }

// FramingListener makes every connection of ln follow the request framing
// that CheckRequest enforces (see framingConn). With tlsConfig, connections
// are TLS first, and the framing is checked on the plaintext; they then
// speak HTTP/1.1 only (ALPN "http/1.1"), as net/http serves HTTP/2 only on
// connections it sees as *tls.Conn, which the framing check hides.
func FramingListener(ln net.Listener, tlsConfig *tls.Config) net.Listener {
	if tlsConfig != nil {
		c := tlsConfig.Clone()
		c.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, c)
	}
	return frontListener{ln}
}

func (l frontListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// Framing states of a framingConn.
const (
	inHead      = iota // request line and header fields
	inBody             // Content-Length body: remaining bytes
	inChunkSize        // a chunk-size line
	inChunkData        // chunk data: remaining bytes
	inChunkEnd         // the CRLF after chunk data
	inTrailer          // after the last chunk: only an empty line is taken
	refused            // a problem was found: end of file from here on
)

// Bounds of what a framingConn buffers; net/http refuses less than this
// (64 KiB of header block, 4 KiB chunk lines) before these are reached.
const (
	maxHeadScan  = 1 << 20
	maxChunkLine = 4096
)

// framingConn follows one connection's request stream (see the comment at
// the top of this file). Read is called by one goroutine at a time (net/http's
// connection reader); problem is read by handlers.
type framingConn struct {
	net.Conn
	state   int
	remain  uint64 // bytes left in a body or chunk
	line    []byte // the line being read (head, chunk size, trailer)
	head    headFacts
	excess  int64 // net/http's chunk-overhead count (internal/chunked.go)
	problem atomic.Pointer[string]
	ended   atomic.Bool // no request after the current one (FinishBody)
}

// headFacts are what a head says about framing.
type headFacts struct {
	seenRequestLine bool
	http10          bool // HTTP/1.0 or older: Transfer-Encoding is ignored by net/http
	contentLengths  int
	contentLength   []byte
	transferEncs    int
	transferEnc     []byte
	bad             string // the first problem in the head's lines
}

// Problem is why the connection's stream was refused ("" if it was not).
func (c *framingConn) Problem() string {
	if p := c.problem.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *framingConn) Read(p []byte) (int, error) {
	if c.state == refused || c.ended.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if keep := c.scan(p[:n]); keep < n {
			if keep == 0 {
				return 0, io.EOF
			}
			return keep, nil
		}
	}
	return n, err
}

// CloseWrite lets net/http half-close the connection before closing it
// (so that a client gets its 400 before a reset).
func (c *framingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tlsState is the connection's TLS state, or nil for plain HTTP.
func (c *framingConn) tlsState() *tls.ConnectionState {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}

// refuse records the first problem; what follows is never delivered.
func (c *framingConn) refuse(why string) {
	c.problem.CompareAndSwap(nil, &why)
	c.state = refused
}

// scan follows the framing through b and returns how many of its bytes
// net/http may have: all of them, or fewer once a problem is found.
func (c *framingConn) scan(b []byte) int {
	i := 0
	for i < len(b) {
		switch c.state {
		case refused:
			return i
		case inBody, inChunkData:
			step := min(uint64(len(b)-i), c.remain)
			i += int(step)
			c.remain -= step
			if c.remain == 0 {
				if c.state == inBody {
					c.state = inHead
				} else {
					c.state = inChunkEnd
				}
			}
		case inChunkEnd:
			if b[i] != "\r\n"[len(c.line)] {
				c.line = c.line[:0]
				c.refuse("chunk data not followed by CRLF")
				return i
			}
			c.line = append(c.line, b[i])
			i++
			if len(c.line) == 2 {
				c.line = c.line[:0]
				c.state = inChunkSize
			}
		default: // a line: head, chunk size or trailer
			if c.state == inHead && len(c.line) == 0 && !c.head.seenRequestLine && (b[i] == '\r' || b[i] == '\n') {
				i++ // empty lines before a request line (net/http skips them after a POST)
				continue
			}
			start, end := i, len(b)
			nl := bytes.IndexByte(b[i:], '\n')
			if nl >= 0 {
				end = i + nl + 1
			}
			c.line = append(c.line, b[i:end]...)
			i = end
			limit := maxHeadScan
			if c.state != inHead {
				limit = maxChunkLine
			}
			if len(c.line) > limit {
				c.refuse("line too long")
				return start
			}
			if nl < 0 {
				continue
			}
			line := c.line
			c.line = c.line[:0]
			switch c.endLine(line) {
			case refuseHead:
				return i // net/http reads the whole head and calls CheckRequest
			case refuseLine:
				return start
			}
		}
	}
	return len(b)
}

// What endLine decides about a line.
const (
	lineOK     = iota
	refuseHead // the head it ends is refused: deliver it, then nothing
	refuseLine // deliver nothing of this line, nor after it
)

// endLine handles one complete line (with its line ending).
func (c *framingConn) endLine(line []byte) int {
	crlf := bytes.HasSuffix(line, []byte("\r\n"))
	text := bytes.TrimRight(line, "\r\n")
	switch c.state {
	case inChunkSize:
		if !crlf || bytes.IndexByte(text, '\r') >= 0 {
			c.refuse("chunk-size line not ended by CRLF")
			return refuseLine
		}
		size, _, _ := bytes.Cut(text, []byte(";"))
		n, ok := parseHex(size)
		if !ok {
			c.refuse("malformed chunk size")
			return refuseLine
		}
		// net/http refuses a body with more than 16 KiB of chunk
		// overhead (internal/chunked.go); counted the same way here.
		c.excess += int64(len(text)) + 2 + 2 - 16 - 2*int64(min(n, 1<<40))
		c.excess = max(c.excess, 0)
		if c.excess > 16*1024 {
			c.refuse("chunked encoding contains too much non-data")
			return refuseLine
		}
		if n == 0 {
			c.state = inTrailer
		} else {
			c.state, c.remain = inChunkData, n
		}
		return lineOK
	case inTrailer:
		if string(line) != "\r\n" {
			c.refuse("trailer fields after a chunked body")
			return refuseLine
		}
		c.state = inHead
		return lineOK
	}
	// inHead
	h := &c.head
	if !crlf && h.bad == "" {
		h.bad = "line ending in a bare LF"
	}
	if bytes.IndexByte(text, '\r') >= 0 && h.bad == "" {
		h.bad = "CR inside a line"
	}
	switch {
	case !h.seenRequestLine:
		h.seenRequestLine = true
		h.http10 = isHTTP10(text)
	case len(text) == 0:
		if !c.endHead() {
			return refuseHead
		}
	case text[0] == ' ' || text[0] == '\t':
		if h.bad == "" {
			h.bad = "folded header line (obs-fold)"
		}
	default:
		name, value, _ := bytes.Cut(text, []byte(":"))
		value = bytes.Trim(value, " \t")
		switch {
		case asciiEqualFold(name, "content-length"):
			h.contentLengths++
			h.contentLength = append(h.contentLength[:0], value...)
		case asciiEqualFold(name, "transfer-encoding"):
			h.transferEncs++
			h.transferEnc = append(h.transferEnc[:0], value...)
		}
	}
	return lineOK
}

// endHead decides the body's framing as net/http does (transfer.go), or
// refuses the head.
func (c *framingConn) endHead() bool {
	h := c.head
	c.head = headFacts{}
	why := h.bad
	switch {
	case why != "":
	case h.transferEncs > 0 && h.http10:
		why = "Transfer-Encoding in an HTTP/1.0 request"
	case h.transferEncs > 0 && h.contentLengths > 0:
		why = "both Transfer-Encoding and Content-Length"
	case h.transferEncs > 1 || h.transferEncs == 1 && !asciiEqualFold(h.transferEnc, "chunked"):
		why = "unsupported Transfer-Encoding"
	case h.contentLengths > 1:
		why = "more than one Content-Length"
	}
	if why != "" {
		c.refuse(why)
		return false
	}
	switch {
	case h.transferEncs == 1:
		c.state, c.excess = inChunkSize, 0
	case h.contentLengths == 1:
		n, ok := parseDecimal(h.contentLength)
		if !ok {
			c.refuse("malformed Content-Length")
			return false
		}
		if n > 0 {
			c.state, c.remain = inBody, n
		}
	}
	return true
}

// isHTTP10 reports whether a request line's version is below HTTP/1.1,
// where net/http ignores Transfer-Encoding.
func isHTTP10(line []byte) bool {
	i := bytes.LastIndexByte(line, ' ')
	if i < 0 {
		return false
	}
	v := string(line[i+1:])
	return v == "HTTP/1.0" || v == "HTTP/0.9"
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x := b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != s[i] {
			return false
		}
	}
	return true
}

// parseHex parses a chunk size: 1 to 16 hex digits, nothing else.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, x := range b {
		switch {
		case '0' <= x && x <= '9':
			x -= '0'
		case 'a' <= x && x <= 'f':
			x -= 'a' - 10
		case 'A' <= x && x <= 'F':
			x -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(x)
	}
	return n, true
}

// parseDecimal parses a Content-Length: 1 to 18 digits, nothing else.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n uint64
	for _, x := range b {
		if x < '0' || x > '9' {
			return 0, false
		}
		n = n*10 + uint64(x-'0')
	}
	return n, true
}

// ConnLimits caps the front's open connections: in total, and per client
// address (the TCP peer's IP). A
// connection past either cap is accepted and closed at once, without an
// answer: writing one would cost what the cap saves, and on a TLS listener
// it could not be read anyway. 0 is no cap. The addresses of ExemptIPs
// (the trusted proxies) count towards Max only: a front proxy carries many
// clients' requests, and opens many connections when cold starts make
// them wait.
type ConnLimits struct {
	Max, MaxPerIP int
	// ExemptIPs are the peers the per-address cap does not apply to;
	// serve and run pass --forwarded-allow-ips ("*" in it exempts no one:
	// it trusts every peer's headers, it does not make every peer a proxy).
	ExemptIPs []string
	Logger    *slog.Logger

	mu      sync.Mutex
	open    int
	perIP   map[string]int
	refused atomic.Int64
	logged  time.Time
}

// Listener applies the caps to ln's connections; the caps are shared by
// all listeners of one ConnLimits.
func (l *ConnLimits) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, limits: l}
}

// Refused is how many connections were closed for being past a cap.
func (l *ConnLimits) Refused() int64 { return l.refused.Load() }

type limitListener struct {
	net.Listener
	limits *ConnLimits
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := ln.limits.admit(c); lc != nil {
			return lc, nil
		}
		c.Close()
	}
}

// admit counts c in, or returns nil if it is past a cap.
func (l *ConnLimits) admit(c net.Conn) net.Conn {
	ip := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP.String()
	} else if h, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		ip = h
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP == nil {
		l.perIP = map[string]int{}
	}
	exempt := l.exempt(ip)
	over := ""
	switch {
	case l.Max > 0 && l.open >= l.Max:
		over = "max_connections"
	case !exempt && l.MaxPerIP > 0 && l.perIP[ip] >= l.MaxPerIP:
		over = "max_connections_per_ip"
	}
	if over != "" {
		n := l.refused.Add(1)
		if now := time.Now(); l.Logger != nil && now.Sub(l.logged) >= time.Second {
			l.logged = now
			l.Logger.Warn("connection refused: over the cap", "cap", over, "client", ip, "open", l.open, "refused_total", n)
		}
		return nil
	}
	l.open++
	if exempt {
		return &limitConn{Conn: c, limits: l}
	}
	l.perIP[ip]++
	return &limitConn{Conn: c, limits: l, ip: ip, counted: true}
}

// exempt reports whether ip is one of ExemptIPs.
func (l *ConnLimits) exempt(ip string) bool {
	peer := net.ParseIP(ip)
	for _, a := range l.ExemptIPs {
		if a == ip || (peer != nil && peer.Equal(net.ParseIP(a))) {
			return true
		}
	}
	return false
}

func (l *ConnLimits) release(ip string, counted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !counted {
		return
	}
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// limitConn gives its place back when closed (once).
type limitConn struct {
	net.Conn
	limits  *ConnLimits
	ip      string
	counted bool // in limits.perIP
	once    sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.limits.release(c.ip, c.counted) })
	return err
}

// CloseWrite and ReadFrom pass through to the TCP connection (net/http's
// half-close before closing, and sendfile for static files).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *limitConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }
