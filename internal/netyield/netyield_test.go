package netyield_test

import (
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgi-wasm/wsgi-wasm/internal/netyield"
)

// watchedListener returns a poller and a loopback listener it watches,
// closed when the test ends.
func watchedListener(t *testing.T) (*netyield.Poller, net.Listener) {
	t.Helper()
	p, err := netyield.New()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := p.Listener(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return p, ln
}

// pair returns a poller, a client connection and the server side of it,
// accepted through the poller's listener.
func pair(t *testing.T) (*netyield.Poller, net.Conn, net.Conn) {
	t.Helper()
	p, ln := watchedListener(t)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	if _, ok := server.(interface{ CloseWrite() error }); !ok {
		t.Fatalf("accepted connection %T lost CloseWrite", server)
	}
	p.Yield() // takes the connect's readiness off the set
	return p, client, server
}

// TestYieldWithoutBytesDoesNotPark: with nothing waiting, a check-in only
// yields.
func TestYieldWithoutBytesDoesNotPark(t *testing.T) {
	p, _, _ := pair(t)
	before := p.Stats()
	for i := 0; i < 100; i++ {
		p.Yield()
	}
	if st := p.Stats(); st != before {
		t.Fatalf("check-ins parked with no bytes waiting: %+v, before %+v", st, before)
	}
}

// attempts is how often a test tries to make bytes arrive that Go's poller
// has not run: the runtime may still run the reader first (sysmon polls the
// network, or takes the P during a system call), and then not parking is
// right too. One attempt in twenty did so in development.
const attempts = 10

// holdP spins for a while without a safe point, as a guest does between
// check-ins.
func holdP() {
	for start := time.Now(); time.Since(start) < 2*time.Millisecond; {
	}
}

// TestYieldParksUntilRead: a goroutine is blocked reading a connection and
// bytes arrive for it while the only P runs "guest code"; the check-in
// parks, the P polls the network, and the read of those bytes wakes it.
func TestYieldParksUntilRead(t *testing.T) {
	untilParked(t, "bytes a blocked reader waited for", parkedForRead)
}

// untilParked runs attempt until one parks, at most attempts times.
func untilParked(t *testing.T, what string, attempt func(*testing.T) bool) {
	t.Helper()
	for i := 0; i < attempts; i++ {
		if attempt(t) {
			return
		}
	}
	t.Fatalf("in %d attempts the check-in never parked for %s", attempts, what)
}

// parkedForRead is one attempt of TestYieldParksUntilRead: whether the
// check-in parked (and then it must have been woken by the read).
func parkedForRead(t *testing.T) bool {
	p, client, server := pair(t)
	p.SetFallback(time.Minute)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := server.Read(buf)
		got <- string(buf[:n])
	}()
	for !p.Blocked() {
		time.Sleep(time.Millisecond) // until the reader waits in Read
	}
	before := p.Stats()
	prev := runtime.GOMAXPROCS(1)
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	holdP()
	p.Yield()
	runtime.GOMAXPROCS(prev)
	st := p.Stats()
	if s := <-got; s != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("reader got %q", s)
	}
	if st.Parked != before.Parked && st.Woken != before.Woken+1 {
		t.Fatalf("stats %+v, before %+v: parked, and not woken by the read", st, before)
	}
	return st.Parked == before.Parked+1
}

// TestYieldSkipsBytesNobodyWaitsFor: bytes arrive that no goroutine is
// reading (its goroutine is busy elsewhere); parking would only idle the
// CPU, so the check-in yields.
func TestYieldSkipsBytesNobodyWaitsFor(t *testing.T) {
	p, client, _ := pair(t)
	before := p.Stats()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	p.Yield()
	if st := p.Stats(); st != before {
		t.Fatalf("stats %+v, before %+v: parked for bytes no goroutine reads", st, before)
	}
}

// TestAcceptWakes: a new connection is bytes waiting too (on the
// listener); the accept wakes the parked check-in, and the accepted
// connection is watched.
func TestAcceptWakes(t *testing.T) {
	untilParked(t, "a connection a blocked accept waited for", parkedForAccept)
}

// parkedForAccept is one attempt of TestAcceptWakes, as parkedForRead.
func parkedForAccept(t *testing.T) bool {
	p, ln := watchedListener(t)
	p.SetFallback(time.Minute)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	for !p.Blocked() {
		time.Sleep(time.Millisecond)
	}
	before := p.Stats()
	// A connect that does not wait for Go's poller (net.Dial would, and
	// the P would run the accept meanwhile).
	prev := runtime.GOMAXPROCS(1)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil && err != unix.EINPROGRESS {
		t.Fatal(err)
	}
	holdP()
	p.Yield()
	runtime.GOMAXPROCS(prev)
	st := p.Stats()
	f := os.NewFile(uintptr(fd), "client")
	client, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-accepted
	if c == nil {
		t.Fatal("accept failed")
	}
	defer c.Close()
	if st.Parked != before.Parked && st.Woken != before.Woken+1 {
		t.Fatalf("stats %+v, before %+v: parked, and not woken by the accept", st, before)
	}
	// The accepted connection is watched: echo through it.
	go io.Copy(c, c)
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	return st.Parked == before.Parked+1
}
