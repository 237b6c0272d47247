package netyield_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/netyield"
)

// pair returns a poller, a client connection and the server side of it,
// accepted through the poller's listener.
func pair(t *testing.T) (*netyield.Poller, net.Conn, net.Conn) {
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

// TestYieldParksUntilRead: bytes arrive for a watched connection; the
// check-in parks, and the read of those bytes wakes it.
func TestYieldParksUntilRead(t *testing.T) {
	p, client, server := pair(t)
	p.SetFallback(time.Minute)
	before := p.Stats()
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the bytes reach the server's socket
	done := make(chan struct{})
	go func() { p.Yield(); close(done) }()
	for p.Parked() == 0 {
		select {
		case <-done:
			t.Fatalf("the check-in returned without parking: %+v", p.Stats())
		case <-time.After(time.Millisecond):
		}
	}
	buf := make([]byte, 64)
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not wake the parked check-in")
	}
	if st := p.Stats(); st.Parked != before.Parked+1 || st.Woken != before.Woken+1 {
		t.Fatalf("stats %+v, before %+v: want one park, woken by the read", st, before)
	}
}

// TestYieldFallsBack: bytes arrive that nobody reads; the parked check-in
// goes on after the fallback, and the same bytes do not park it again.
func TestYieldFallsBack(t *testing.T) {
	p, client, _ := pair(t)
	p.SetFallback(time.Millisecond)
	before := p.Stats()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	p.Yield()
	p.Yield()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("two check-ins took %v", took)
	}
	if st := p.Stats(); st.Parked != before.Parked+1 || st.Woken != before.Woken {
		t.Fatalf("stats %+v, before %+v: want one park, not woken", st, before)
	}
	if p.Parked() != 0 {
		t.Fatalf("%d check-ins still counted as parked", p.Parked())
	}
}

// TestAcceptWakes: a new connection is bytes waiting too (on the
// listener); accepting it wakes the check-in.
func TestAcceptWakes(t *testing.T) {
	p, err := netyield.New()
	if err != nil {
		t.Fatal(err)
	}
	p.SetFallback(time.Minute)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := p.Listener(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { p.Yield(); close(done) }()
	for p.Parked() == 0 {
		select {
		case <-done:
			t.Fatalf("the check-in returned without parking: %+v", p.Stats())
		case <-time.After(time.Millisecond):
		}
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the accept did not wake the parked check-in")
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
}
