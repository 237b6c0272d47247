package netyield

import (
	"net"
	"testing"
	"time"
)

// TestParkedYieldFallsBack: bytes arrive for a socket a goroutine is said
// to be reading, and no read comes; the parked check-in goes on after the
// fallback, not woken, and counts as parked no more.
func TestParkedYieldFallsBack(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	p.SetFallback(5 * time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := p.watch(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	s.blocked.Store(true) // a read that never returns
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	p.Yield()
	took := time.Since(start)
	if st := p.Stats(); st.Parked != 1 || st.Woken != 0 {
		t.Fatalf("stats %+v: want one park, not woken", st)
	}
	if took < 5*time.Millisecond || took > 5*time.Second {
		t.Fatalf("the parked check-in went on after %v; fallback 5ms", took)
	}
	if n := p.parked.Load(); n != 0 {
		t.Fatalf("%d check-ins still counted as parked", n)
	}
	p.Yield() // edge-triggered: the same bytes do not park it again
	if st := p.Stats(); st.Parked != 1 {
		t.Fatalf("stats %+v: the same bytes parked the check-in twice", st)
	}
}
