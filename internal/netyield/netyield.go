// Package netyield lets a guest's periodic check-in give its Go P to the
// network when clients are waiting.
//
// Guest code is compiled WebAssembly: it never reaches one of Go's safe
// points on its own, so a goroutine running it keeps its P until the guest
// checks in (every 2 ms, sandbox's preemptTick). A check-in that calls
// runtime.Gosched lets other runnable goroutines go first, but it does not
// poll the network: the scheduler only looks at sockets when a P finds no
// runnable goroutine, or from sysmon, at most every 10 ms. When every P
// runs guest code, a request that arrives waits in the kernel until then,
// which is the long latency tail of a busy server.
//
// A Poller keeps its own epoll set of the front's listeners and
// connections, edge-triggered. At a check-in, Yield asks it (epoll_wait
// with no timeout, one system call) which sockets got bytes since the last
// look. If one of them has a goroutine blocked reading it (or accepting on
// it), Go's poller has not run that goroutine yet, and Yield parks the
// guest's goroutine: the P, finding nothing else to run, polls the network
// and runs the goroutines that read those bytes, and the first of them to
// return from a read or accept wakes the guest (Arrived). Otherwise (no
// bytes, or bytes that a goroutine already took, or that wait for one busy
// elsewhere: an idle P polled them already, or nobody reads yet) it yields
// as Gosched does: parking then would only leave the CPU idle. A fallback
// timer wakes a parked check-in if no read comes.
package netyield

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fallback is how long a parked check-in waits for a read that does not
// come. An idle P sleeps in epoll with millisecond resolution, so the
// wait can reach a millisecond whatever this says.
const fallback = 200 * time.Microsecond

// Poller watches the front's sockets for bytes Go's network poller has not
// run yet. The zero value is not usable; make one with New. A Poller lives
// as long as the process (its epoll descriptor is never closed: a check-in
// may be using it at any time).
type Poller struct {
	epfd int // never closed

	mu     sync.Mutex
	wake   chan struct{} // closed by Arrived to wake the parked check-ins
	parked atomic.Int32  // check-ins waiting on wake

	parks, kicked atomic.Int64
	fallback      time.Duration // the const fallback; tests lengthen it

	sockets sync.Map // socket id (the epoll event's data) -> *socket
	nextID  atomic.Uint64
}

// socket is a watched listener or connection.
type socket struct {
	id      uint64
	blocked atomic.Bool // a goroutine is in its Read or Accept
}

// New makes a Poller with an epoll set of its own.
func New() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netyield: epoll_create1: %w", err)
	}
	return &Poller{epfd: fd, wake: make(chan struct{}), fallback: fallback}, nil
}

// watch adds c's socket to the set. The kernel drops it from the set when
// the socket is closed; forget then drops the id.
func (p *Poller) watch(c syscall.Conn) (*socket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &socket{id: p.nextID.Add(1)}
	p.sockets.Store(s.id, s)
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(s.id)), Pad: int32(uint32(s.id >> 32))}
		ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err = errors.Join(err, ctlErr); err != nil {
		p.forget(s)
		return nil, err
	}
	return s, nil
}

// forget drops a socket that is closed.
func (p *Poller) forget(s *socket) { p.sockets.Delete(s.id) }

// waitedFor reports whether a goroutine is blocked on one of the sockets
// of events: its bytes are for a goroutine Go's poller has not run.
func (p *Poller) waitedFor(events []unix.EpollEvent) bool {
	for _, ev := range events {
		id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		if v, ok := p.sockets.Load(id); ok && v.(*socket).blocked.Load() {
			return true
		}
	}
	return false
}

// Yield is a guest check-in's yield (sandbox.Options.Yield): it parks the
// goroutine until the network's waiting bytes are read when there are
// some, and runs runtime.Gosched otherwise.
func (p *Poller) Yield() {
	var events [8]unix.EpollEvent
	n, err := unix.EpollWait(p.epfd, events[:], 0)
	if err != nil || n <= 0 || !p.waitedFor(events[:n]) {
		runtime.Gosched()
		return
	}
	p.mu.Lock()
	wake := p.wake
	p.parked.Add(1)
	p.mu.Unlock()
	p.parks.Add(1)
	t := time.NewTimer(p.fallback)
	select {
	case <-wake:
		p.kicked.Add(1)
	case <-t.C:
		p.mu.Lock()
		if p.wake == wake {
			p.parked.Add(-1)
		}
		p.mu.Unlock()
	}
	t.Stop()
}

// Arrived wakes the parked check-ins: a watched socket's read or accept
// returned, so the network poller has run.
func (p *Poller) Arrived() {
	if p.parked.Load() == 0 {
		return
	}
	p.mu.Lock()
	if p.parked.Load() > 0 {
		close(p.wake)
		p.wake = make(chan struct{})
		p.parked.Store(0)
	}
	p.mu.Unlock()
}

// Stats are counts since New: check-ins that parked, and those of them
// that a read woke (the others waited for the fallback).
type Stats struct{ Parked, Woken int64 }

// Stats returns the counts so far.
func (p *Poller) Stats() Stats { return Stats{Parked: p.parks.Load(), Woken: p.kicked.Load()} }

// Listener watches ln's socket and every connection it accepts. Wrap the
// raw TCP listener, below TLS, so that handshake bytes count too.
func (p *Poller) Listener(ln net.Listener) (net.Listener, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("netyield: %T has no socket to watch", ln)
	}
	s, err := p.watch(sc)
	if err != nil {
		return nil, fmt.Errorf("netyield: watching the listener: %w", err)
	}
	return &listener{Listener: ln, p: p, s: s}, nil
}

type listener struct {
	net.Listener
	p *Poller
	s *socket
}

func (l *listener) Accept() (net.Conn, error) {
	l.s.blocked.Store(true)
	c, err := l.Listener.Accept()
	l.s.blocked.Store(false)
	l.p.Arrived()
	if err != nil {
		return c, err
	}
	if sc, ok := c.(syscall.Conn); ok {
		if s, err := l.p.watch(sc); err == nil {
			return &conn{Conn: c, p: l.p, s: s}, nil
		}
	}
	return c, nil // not watched: its bytes wait for Go's poller as before
}

func (l *listener) Close() error {
	l.p.forget(l.s)
	return l.Listener.Close()
}

type conn struct {
	net.Conn
	p *Poller
	s *socket
}

func (c *conn) Read(b []byte) (int, error) {
	c.s.blocked.Store(true)
	n, err := c.Conn.Read(b)
	c.s.blocked.Store(false)
	c.p.Arrived()
	return n, err
}

func (c *conn) Close() error {
	c.p.forget(c.s)
	return c.Conn.Close()
}

// CloseWrite half-closes the connection when the socket can (the front
// sends its last response, then closes; server/frontconn.go).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
