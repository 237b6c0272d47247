package hostabi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
)

// Host functions of outbound connections (ABI.md "Outbound connections").
const (
	FuncNetConnect   = "net_connect"
	FuncNetSend      = "net_send"
	FuncNetRecv      = "net_recv"
	FuncNetPoll      = "net_poll"
	FuncNetShutdown  = "net_shutdown"
	FuncNetClose     = "net_close"
	FuncNetInfo      = "net_info"
	FuncNetTLS       = "net_tls_handshake"
	FuncNetLastError = "net_last_error"
)

// WASI errno values the outbound functions return negated (ABI.md
// "Outbound connections", "Errors").
const (
	errnoAcces       = 2
	errnoAgain       = 6
	errnoBadf        = 8
	errnoConnAborted = 13
	errnoConnRefused = 14
	errnoConnReset   = 15
	errnoFault       = 21
	errnoHostUnreach = 23
	errnoInval       = 28
	errnoIO          = 29
	errnoMfile       = 33
	errnoNetUnreach  = 40
	errnoNoent       = 44
	errnoNotConn     = 53
	errnoPipe        = 64
	errnoProto       = 65
	errnoTimedOut    = 73
)

// Results of net_tls_handshake besides 0 and -errno (ABI.md
// "net_tls_handshake").
const (
	TLSVerifyFailed = 1
	TLSFailed       = 2
)

// Flags of net_recv and events of net_poll (ABI.md "net_recv", "net_poll").
const (
	RecvPeek = 1

	PollIn   = 0x1
	PollOut  = 0x4
	PollErr  = 0x8
	PollHup  = 0x10
	PollNval = 0x20
)

// Limits of the outbound functions (ABI.md "Outbound connections").
const (
	// DefaultMaxConnections is an instance's cap on open connections when
	// its configuration names none.
	DefaultMaxConnections = 8
	// ConnBufferSize is the most bytes the host holds for a connection that
	// the guest has not read (what net_poll and a peek read ahead).
	ConnBufferSize = 16 << 10
	// MaxPollHandles is the most entries one net_poll takes.
	MaxPollHandles = 64
	// MaxTLSConfig is the largest net_tls_handshake configuration (CA
	// certificates included).
	MaxTLSConfig = 4 << 20
	// MaxHostName is the longest host name net_connect takes.
	MaxHostName = 253
)

// netFuncs are the outbound host functions, for Instantiate; their
// signatures are HostImports'.
var netFuncs = []struct {
	name   string
	fn     api.GoModuleFunc
	params []string
}{
	{FuncNetConnect, netConnect, []string{"host", "host_len", "port", "timeout_ms"}},
	{FuncNetSend, netSend, []string{"handle", "ptr", "len", "timeout_ms"}},
	{FuncNetRecv, netRecv, []string{"handle", "buf", "limit", "timeout_ms", "flags"}},
	{FuncNetPoll, netPoll, []string{"entries", "count", "timeout_ms"}},
	{FuncNetShutdown, netShutdown, []string{"handle", "how"}},
	{FuncNetClose, netClose, []string{"handle"}},
	{FuncNetInfo, netInfo, []string{"handle", "what", "buf", "limit"}},
	{FuncNetTLS, netTLSHandshake, []string{"handle", "config", "config_len", "timeout_ms"}},
	{FuncNetLastError, netLastError, []string{"buf", "limit"}},
}

// Conns is one instance's table of outbound connections: what the net_*
// host functions act on, made with the instance and closed with it. Its
// methods are safe for concurrent use; the guest, single-threaded, uses one
// connection at a time.
type Conns struct {
	dialer outbound.Dialer
	max    int

	mu      sync.Mutex
	conns   map[int32]*conn
	next    int32
	closed  bool
	lastErr string
}

// NewConns makes the table of an instance whose connections d opens, at
// most max at a time (0: DefaultMaxConnections; less than 0: none). A nil d refuses every
// destination (outbound.Deny).
func NewConns(d outbound.Dialer, max int) *Conns {
	if d == nil {
		d = outbound.Deny{}
	}
	switch {
	case max == 0:
		max = DefaultMaxConnections
	case max < 0: // none: the policy's outbound_connections = 0
		max = 0
	}
	return &Conns{dialer: d, max: max, conns: map[int32]*conn{}}
}

// Open is the number of open connections.
func (t *Conns) Open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Close closes every connection; later connects fail. It is idempotent.
func (t *Conns) Close() error {
	t.mu.Lock()
	conns := t.conns
	t.conns, t.closed = map[int32]*conn{}, true
	t.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return nil
}

type connsKey struct{}

// WithConns makes t the connection table of the guest calls made with ctx.
// Without one, every net_* function fails with EBADF (net_connect with
// EACCES).
func WithConns(ctx context.Context, t *Conns) context.Context {
	return context.WithValue(ctx, connsKey{}, t)
}

func connsOf(ctx context.Context) *Conns {
	t, _ := ctx.Value(connsKey{}).(*Conns)
	return t
}

func (t *Conns) get(h int32) *conn {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns[h]
}

func (t *Conns) setError(msg string) {
	if t != nil {
		t.mu.Lock()
		t.lastErr = msg
		t.mu.Unlock()
	}
}

// conn is one connection. buf holds what was read ahead (by net_poll or a
// peek) and not yet given to the guest: at most ConnBufferSize bytes, so a
// guest that never reads costs that and no more.
type conn struct {
	raw   net.Conn // as the Dialer returned it
	c     net.Conn // raw, or the TLS client over it
	tls   *tlsState
	buf   []byte // ConnBufferSize capacity; buf[off:] unread
	off   int
	rerr  error // sticky read error (io.EOF at the end) once buf is drained
	wshut bool
}

func (c *conn) buffered() int { return len(c.buf) - c.off }

// fill reads once into the read-ahead buffer if it is empty, until
// deadline (zero: none). It reports a timeout as an error.
func (c *conn) fill(deadline time.Time) error {
	if c.buffered() > 0 || c.rerr != nil {
		return nil
	}
	c.c.SetReadDeadline(deadline)
	n, err := c.c.Read(c.buf[:cap(c.buf)])
	c.buf, c.off = c.buf[:n], 0
	if err != nil && !isTimeout(err) {
		c.rerr = err
		return nil
	}
	if n > 0 {
		return nil
	}
	return err
}

func (c *conn) close() {
	// A TLS close_notify must not block on a peer that does not read.
	c.c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	c.c.Close()
	c.raw.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// errnoOf maps a connection's failure to the WASI errno the guest sees.
func errnoOf(err error) int32 {
	var refused *outbound.RefusedError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &refused):
		if refused.Limit {
			return errnoMfile
		}
		return errnoAcces
	case isTimeout(err):
		return errnoTimedOut
	case errors.Is(err, syscall.ECONNREFUSED):
		return errnoConnRefused
	case errors.Is(err, syscall.ECONNRESET):
		return errnoConnReset
	case errors.Is(err, syscall.ECONNABORTED):
		return errnoConnAborted
	case errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return errnoPipe
	case errors.Is(err, syscall.EHOSTUNREACH):
		return errnoHostUnreach
	case errors.Is(err, syscall.ENETUNREACH):
		return errnoNetUnreach
	case errors.As(err, &dnsErr):
		return errnoNoent
	}
	return errnoIO
}

// fail records err's message for net_last_error and returns -errno.
func (t *Conns) fail(errno int32, msg string) uint64 {
	t.setError(msg)
	return negErrno(errno)
}

func negErrno(errno int32) uint64 { return uint64(uint32(-errno)) }

// deadline is the earlier of now+timeoutMs (negative: none) and ctx's
// deadline; zero when neither. A timeout of 0 still gives the peer a
// millisecond: Go has no non-blocking read, and a deadline already past
// would never take what has arrived.
func deadline(ctx context.Context, timeoutMs int32) time.Time {
	var d time.Time
	if timeoutMs >= 0 {
		ms := time.Duration(timeoutMs) * time.Millisecond
		if ms == 0 {
			ms = time.Millisecond
		}
		d = time.Now().Add(ms)
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d = cd
	}
	return d
}

// blocking runs op with conn c's deadlines cut short when ctx ends, then
// traps the guest if ctx ended (the request's deadline: 504 as for any
// other call, ABI.md "Interruption").
func blocking(ctx context.Context, fn string, c net.Conn, op func()) {
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	op()
	stop()
	if ctx.Err() != nil {
		panic(fmt.Errorf("hostabi: %s: %w", fn, context.Cause(ctx)))
	}
}

// guestBytes is the guest range [ptr, ptr+n), or false when it is not
// inside linear memory.
func guestBytes(m api.Module, ptr, n uint32) ([]byte, bool) {
	return m.Memory().Read(ptr, n)
}

// netConnect: ABI.md "net_connect".
func netConnect(ctx context.Context, m api.Module, stack []uint64) {
	settle(ctx)
	t := connsOf(ctx)
	hostPtr, hostLen, port, timeoutMs := uint32(stack[0]), uint32(stack[1]), int32(stack[2]), int32(stack[3])
	if t == nil {
		stack[0] = negErrno(errnoAcces)
		return
	}
	if hostLen == 0 || hostLen > MaxHostName || port <= 0 || port > 65535 {
		stack[0] = t.fail(errnoInval, "connect: a host name of 1 to 253 bytes and a port from 1 to 65535")
		return
	}
	b, ok := guestBytes(m, hostPtr, hostLen)
	if !ok {
		stack[0] = t.fail(errnoFault, "connect: host name outside linear memory")
		return
	}
	host := string(b)
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		stack[0] = t.fail(errnoBadf, "connect: the instance is closed")
		return
	case len(t.conns) >= t.max:
		t.mu.Unlock()
		stack[0] = t.fail(errnoMfile, fmt.Sprintf("too many open connections (this instance may hold %d)", t.max))
		return
	}
	t.mu.Unlock()
	dctx, cancel := context.WithCancel(ctx)
	if d := deadline(ctx, timeoutMs); !d.IsZero() {
		dctx, cancel = context.WithDeadline(ctx, d)
	}
	nc, err := t.dialer.Dial(dctx, host, int(port))
	cancel()
	if ctx.Err() != nil {
		if nc != nil {
			nc.Close()
		}
		panic(fmt.Errorf("hostabi: %s: %w", FuncNetConnect, context.Cause(ctx)))
	}
	if err != nil {
		msg := err.Error()
		if errnoOf(err) == errnoTimedOut {
			msg = "timed out"
		}
		stack[0] = t.fail(errnoOf(err), msg)
		return
	}
	c := &conn{raw: nc, c: nc, buf: make([]byte, 0, ConnBufferSize)}
	t.mu.Lock()
	if t.closed || len(t.conns) >= t.max {
		t.mu.Unlock()
		c.close()
		stack[0] = t.fail(errnoMfile, "too many open connections")
		return
	}
	for t.conns[t.next] != nil || t.next < 0 {
		t.next++
		if t.next < 0 {
			t.next = 0
		}
	}
	h := t.next
	t.next++
	t.conns[h] = c
	t.mu.Unlock()
	stack[0] = uint64(uint32(h))
}

// netSend: ABI.md "net_send".
func netSend(ctx context.Context, m api.Module, stack []uint64) {
	settle(ctx)
	t := connsOf(ctx)
	h, ptr, n, timeoutMs := int32(stack[0]), uint32(stack[1]), uint32(stack[2]), int32(stack[3])
	c := t.get(h)
	if c == nil {
		stack[0] = t.fail(errnoBadf, "send: not an open connection")
		return
	}
	if c.wshut {
		stack[0] = t.fail(errnoPipe, "send: the connection was shut down for writing")
		return
	}
	p, ok := guestBytes(m, ptr, n)
	if !ok {
		stack[0] = t.fail(errnoFault, "send: buffer outside linear memory")
		return
	}
	var wrote int
	var err error
	blocking(ctx, FuncNetSend, c.c, func() {
		c.c.SetWriteDeadline(deadline(ctx, timeoutMs))
		wrote, err = c.c.Write(p)
	})
	switch {
	case wrote > 0:
		stack[0] = uint64(uint32(wrote))
	case err != nil && isTimeout(err) && timeoutMs == 0:
		stack[0] = t.fail(errnoAgain, "send: would block")
	case err != nil:
		stack[0] = t.fail(errnoOf(err), "send: "+err.Error())
	default:
		stack[0] = 0
	}
}

// netRecv: ABI.md "net_recv".
func netRecv(ctx context.Context, m api.Module, stack []uint64) {
	settle(ctx)
	t := connsOf(ctx)
	h, ptr, limit, timeoutMs, flags := int32(stack[0]), uint32(stack[1]), uint32(stack[2]), int32(stack[3]), uint32(stack[4])
	c := t.get(h)
	if c == nil {
		stack[0] = t.fail(errnoBadf, "recv: not an open connection")
		return
	}
	dst, ok := guestBytes(m, ptr, limit)
	if !ok {
		stack[0] = t.fail(errnoFault, "recv: buffer outside linear memory")
		return
	}
	if flags&^RecvPeek != 0 {
		stack[0] = t.fail(errnoInval, "recv: unknown flags")
		return
	}
	if limit == 0 {
		stack[0] = 0
		return
	}
	var n int
	var err error
	if c.buffered() == 0 && c.rerr == nil {
		blocking(ctx, FuncNetRecv, c.c, func() {
			d := deadline(ctx, timeoutMs)
			if flags&RecvPeek != 0 {
				err = c.fill(d)
				return
			}
			c.c.SetReadDeadline(d)
			n, err = c.c.Read(dst)
			if err != nil && !isTimeout(err) {
				c.rerr = err
			}
		})
		if n > 0 {
			stack[0] = uint64(uint32(n))
			return
		}
	}
	if b := c.buffered(); b > 0 {
		n = copy(dst, c.buf[c.off:])
		if flags&RecvPeek == 0 {
			c.off += n
		}
		stack[0] = uint64(uint32(n))
		return
	}
	switch {
	case c.rerr == io.EOF || errors.Is(c.rerr, io.ErrUnexpectedEOF):
		stack[0] = 0
	case c.rerr != nil:
		stack[0] = t.fail(errnoOf(c.rerr), "recv: "+c.rerr.Error())
	case err != nil && timeoutMs == 0:
		stack[0] = t.fail(errnoAgain, "recv: would block")
	case err != nil:
		stack[0] = t.fail(errnoTimedOut, "timed out")
	default:
		stack[0] = 0
	}
}

// pollEntrySize is the size of one net_poll entry: handle i32, events
// i16, revents i16, as a C struct pollfd.
const pollEntrySize = 8

// netPoll: ABI.md "net_poll".
func netPoll(ctx context.Context, m api.Module, stack []uint64) {
	settle(ctx)
	t := connsOf(ctx)
	ptr, count, timeoutMs := uint32(stack[0]), uint32(stack[1]), int32(stack[2])
	if count > MaxPollHandles {
		stack[0] = t.fail(errnoInval, fmt.Sprintf("poll: at most %d connections at once", MaxPollHandles))
		return
	}
	entries, ok := guestBytes(m, ptr, count*pollEntrySize)
	if !ok {
		stack[0] = t.fail(errnoFault, "poll: entries outside linear memory")
		return
	}
	type entry struct {
		c      *conn
		events uint16
	}
	es := make([]entry, count)
	for i := range es {
		e := entries[i*pollEntrySize:]
		h := int32(le32(e))
		es[i] = entry{c: t.get(h), events: le16(e[4:])}
	}
	// ready fills revents and counts the entries with any.
	ready := func() int {
		n := 0
		for i, e := range es {
			var rev uint16
			switch {
			case e.c == nil:
				rev = PollNval
			default:
				if e.events&PollIn != 0 && (e.c.buffered() > 0 || e.c.rerr != nil) {
					rev |= PollIn
				}
				if e.c.rerr != nil && e.c.rerr != io.EOF {
					rev |= PollErr
				}
				if e.c.rerr == io.EOF && e.c.buffered() == 0 {
					rev |= PollHup
				}
				if e.events&PollOut != 0 && !e.c.wshut {
					rev |= PollOut
				}
			}
			put16(entries[i*pollEntrySize+6:], rev)
			if rev != 0 {
				n++
			}
		}
		return n
	}
	if n := ready(); n > 0 || timeoutMs == 0 {
		stack[0] = uint64(uint32(n))
		return
	}
	var waiting []*conn
	for _, e := range es {
		if e.c != nil && e.events&PollIn != 0 && !slices.Contains(waiting, e.c) {
			waiting = append(waiting, e.c)
		}
	}
	d := deadline(ctx, timeoutMs)
	if len(waiting) == 0 {
		// Nothing to wait for but the time: sleep it, ending with ctx.
		var wait <-chan time.Time
		if !d.IsZero() {
			timer := time.NewTimer(time.Until(d))
			defer timer.Stop()
			wait = timer.C
		}
		select {
		case <-wait:
		case <-ctx.Done():
			panic(fmt.Errorf("hostabi: %s: %w", FuncNetPoll, context.Cause(ctx)))
		}
		stack[0] = 0
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range waiting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(pctx, func() { c.c.SetReadDeadline(time.Unix(1, 0)) })
			defer stop()
			if pctx.Err() == nil {
				c.fill(d)
			}
			if c.buffered() > 0 || c.rerr != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	cancel()
	if ctx.Err() != nil {
		panic(fmt.Errorf("hostabi: %s: %w", FuncNetPoll, context.Cause(ctx)))
	}
	stack[0] = uint64(uint32(ready()))
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func le16(b []byte) uint16     { return uint16(b[0]) | uint16(b[1])<<8 }
func put16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }

// netShutdown: ABI.md "net_shutdown".
func netShutdown(ctx context.Context, _ api.Module, stack []uint64) {
	t := connsOf(ctx)
	h, how := int32(stack[0]), int32(stack[1])
	c := t.get(h)
	if c == nil {
		stack[0] = t.fail(errnoBadf, "shutdown: not an open connection")
		return
	}
	if how < 0 || how > 2 {
		stack[0] = t.fail(errnoInval, "shutdown: how is 0 (read), 1 (write) or 2 (both)")
		return
	}
	if how != 0 && !c.wshut {
		c.wshut = true
		type closeWriter interface{ CloseWrite() error }
		if cw, ok := c.c.(closeWriter); ok {
			c.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			cw.CloseWrite()
		}
		if c.tls != nil {
			if cw, ok := c.raw.(closeWriter); ok {
				cw.CloseWrite()
			}
		}
	}
	if how != 1 && c.rerr == nil {
		c.rerr, c.buf = io.EOF, c.buf[:0]
	}
	stack[0] = 0
}

// netClose: ABI.md "net_close".
func netClose(ctx context.Context, _ api.Module, stack []uint64) {
	t := connsOf(ctx)
	h := int32(stack[0])
	if t == nil {
		stack[0] = negErrno(errnoBadf)
		return
	}
	t.mu.Lock()
	c := t.conns[h]
	delete(t.conns, h)
	t.mu.Unlock()
	if c == nil {
		stack[0] = t.fail(errnoBadf, "close: not an open connection")
		return
	}
	c.close()
	stack[0] = 0
}

// What net_info reports (ABI.md "net_info").
const (
	InfoPeerAddr     = 0
	InfoLocalAddr    = 1
	InfoTLSVersion   = 2
	InfoTLSCipher    = 3
	InfoALPN         = 4
	InfoPeerCert     = 5
	InfoPeerCertJSON = 6
)

// netInfo: ABI.md "net_info".
func netInfo(ctx context.Context, m api.Module, stack []uint64) {
	t := connsOf(ctx)
	h, what, buf, limit := int32(stack[0]), int32(stack[1]), uint32(stack[2]), uint32(stack[3])
	c := t.get(h)
	if c == nil {
		stack[0] = t.fail(errnoBadf, "info: not an open connection")
		return
	}
	var v []byte
	switch what {
	case InfoPeerAddr:
		v = []byte(c.raw.RemoteAddr().String())
	case InfoLocalAddr:
		v = []byte(c.raw.LocalAddr().String())
	case InfoTLSVersion, InfoTLSCipher, InfoALPN, InfoPeerCert, InfoPeerCertJSON:
		if c.tls == nil {
			stack[0] = t.fail(errnoNotConn, "info: no TLS on this connection")
			return
		}
		v = c.tls.info(what)
	default:
		stack[0] = t.fail(errnoInval, "info: unknown item")
		return
	}
	stack[0] = putResult(t, m, buf, limit, v)
}

// putResult writes v at buf if it fits in limit and returns its length
// (ABI.md: the guest retries with a buffer that large).
func putResult(t *Conns, m api.Module, buf, limit uint32, v []byte) uint64 {
	dst, ok := guestBytes(m, buf, limit)
	if !ok {
		return t.fail(errnoFault, "buffer outside linear memory")
	}
	if len(v) <= len(dst) {
		copy(dst, v)
	}
	return uint64(uint32(len(v)))
}

// netLastError: ABI.md "net_last_error".
func netLastError(ctx context.Context, m api.Module, stack []uint64) {
	t := connsOf(ctx)
	buf, limit := uint32(stack[0]), uint32(stack[1])
	msg := ""
	if t == nil {
		msg = "outbound connections are not available here"
	} else {
		t.mu.Lock()
		msg = t.lastErr
		t.mu.Unlock()
	}
	dst, ok := guestBytes(m, buf, limit)
	if !ok {
		stack[0] = negErrno(errnoFault)
		return
	}
	if len(msg) <= len(dst) {
		copy(dst, msg)
	}
	stack[0] = uint64(uint32(len(msg)))
}
