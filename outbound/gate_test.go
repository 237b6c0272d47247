package outbound_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

// listener is a loopback server that records every connection made to it
// and echoes what it reads.
type listener struct {
	port     int
	accepted atomic.Int64
}

func listen(t *testing.T) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c); c.Close() }()
		}
	}()
	return l
}

// resolver answers from a table and records what it was asked.
type resolver struct {
	table map[string][]netip.Addr
	mu    sync.Mutex
	asked []string
}

func (r *resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	if a, ok := r.table[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func rules(t *testing.T, list ...string) []policies.Rule {
	t.Helper()
	r, err := policies.ParseRules(list)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func gate(t *testing.T, res *resolver, max int, list ...string) *outbound.Gate {
	return outbound.New(outbound.Config{Rules: rules(t, list...), MaxConns: max, ConnectTimeout: 5 * time.Second, Resolver: res})
}

func refused(t *testing.T, err error, want string) {
	t.Helper()
	var re *outbound.RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Error(), want) {
		t.Fatalf("error %v, want a refusal saying %q", err, want)
	}
}

func TestDenyByDefault(t *testing.T) {
	l := listen(t)
	res := &resolver{table: map[string][]netip.Addr{"localhost": {netip.MustParseAddr("127.0.0.1")}}}
	ctx := context.Background()
	for _, g := range []outbound.Dialer{gate(t, res, 8), outbound.Deny{}} {
		_, err := g.Dial(ctx, "127.0.0.1", l.port)
		refused(t, err, "127.0.0.1:"+strconv.Itoa(l.port))
		_, err = g.Dial(ctx, "localhost", l.port)
		refused(t, err, `"localhost:`+strconv.Itoa(l.port)+`"`)
	}
	if len(res.asked) != 0 || l.accepted.Load() != 0 {
		t.Fatalf("with no rules: looked up %v, %d connections reached the listener", res.asked, l.accepted.Load())
	}
}

func TestAddressRuleAllowsLoopback(t *testing.T) {
	l := listen(t)
	g := gate(t, &resolver{}, 8, "127.0.0.1:"+strconv.Itoa(l.port))
	c, err := g.Dial(context.Background(), "127.0.0.1", l.port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	if _, err := g.Dial(context.Background(), "127.0.0.1", l.port+1); err == nil {
		t.Fatal("another port of an allowed address connected")
	}
}

// A name a rule allows that resolves to a loopback, private or link-local
// address gets nothing (DNS rebinding, a cloud's metadata service), unless
// a rule names that address too.
func TestNamesResolvingInsideAreRefused(t *testing.T) {
	l := listen(t)
	p := strconv.Itoa(l.port)
	res := &resolver{table: map[string][]netip.Addr{
		"db.example.test":       {netip.MustParseAddr("127.0.0.1")},
		"metadata.example.test": {netip.MustParseAddr("169.254.169.254")},
		"mapped.example.test":   {netip.MustParseAddr("::ffff:127.0.0.1")},
	}}
	g := gate(t, res, 8, "db.example.test:"+p, "*.example.test:"+p)
	for _, name := range []string{"db.example.test", "metadata.example.test", "mapped.example.test"} {
		_, err := g.Dial(context.Background(), name, l.port)
		refused(t, err, "not public")
	}
	if l.accepted.Load() != 0 {
		t.Fatal("a connection reached the listener")
	}
	g = gate(t, res, 8, "db.example.test:"+p, "127.0.0.1:"+p)
	c, err := g.Dial(context.Background(), "DB.Example.Test.", l.port)
	if err != nil {
		t.Fatalf("a name resolving to an address a rule names: %v", err)
	}
	c.Close()
	res.table["empty.example.test"] = []netip.Addr{}
	if _, err := gate(t, res, 8, "empty.example.test:"+p).Dial(context.Background(), "empty.example.test", l.port); err == nil || !strings.Contains(err.Error(), "no addresses") {
		t.Fatalf("a name resolving to no address: %v", err)
	}
	if _, err := g.Dial(context.Background(), "other.example.test", l.port); err == nil {
		t.Fatal("a name no rule allows connected")
	}
	for _, asked := range res.asked {
		if asked == "other.example.test" {
			t.Fatal("a name no rule allows was looked up")
		}
	}
}

func TestTenantConnectionLimit(t *testing.T) {
	l := listen(t)
	reg := prometheus.NewRegistry()
	m := &outbound.Metrics{
		Opened:   prometheus.NewCounter(prometheus.CounterOpts{Name: "opened"}),
		BytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "out"}),
		BytesIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "in"}),
		Refused:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"}),
	}
	reg.MustRegister(m.Opened, m.BytesOut, m.BytesIn, m.Refused)
	g := outbound.New(outbound.Config{Rules: rules(t, "127.0.0.1:"+strconv.Itoa(l.port)), MaxConns: 2, ConnectTimeout: 5 * time.Second, Metrics: m})
	a, err := g.Dial(context.Background(), "127.0.0.1", l.port)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Dial(context.Background(), "127.0.0.1", l.port)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Dial(context.Background(), "127.0.0.1", l.port)
	var re *outbound.RefusedError
	if !errors.As(err, &re) || !re.Limit {
		t.Fatalf("third connection: %v, want a refusal for the limit", err)
	}
	a.Write([]byte("hello"))
	buf := make([]byte, 5)
	io.ReadFull(a, buf)
	a.Close()
	a.Close() // twice gives one slot back
	if g.Open() != 1 {
		t.Fatalf("open %d after closing one of two", g.Open())
	}
	c, err := g.Dial(context.Background(), "127.0.0.1", l.port)
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	c.Close()
	b.Close()
	if got := [4]float64{testutil.ToFloat64(m.Opened), testutil.ToFloat64(m.BytesOut), testutil.ToFloat64(m.BytesIn), testutil.ToFloat64(m.Refused.WithLabelValues(outbound.ReasonLimit))}; got != [4]float64{3, 5, 5, 1} {
		t.Fatalf("opened, out, in, refused for the limit: %v", got)
	}
	if g.Open() != 0 || l.accepted.Load() != 3 {
		t.Fatalf("open %d, accepted %d", g.Open(), l.accepted.Load())
	}
}

func TestPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": true, "2001:4860:4860::8888": true, "93.184.216.34": true,
		"127.0.0.1": false, "127.1.2.3": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "0.0.0.0": false, "::": false, "0.1.2.3": false,
		"100.64.0.1": false, "255.255.255.255": false, "224.0.0.1": false, "::ffff:10.0.0.1": false,
		"64:ff9b::a00:1": false, "2002:a00:1::": false, "2001:0:a00:1::": false,
	} {
		if got := outbound.Public(netip.MustParseAddr(s)); got != want {
			t.Errorf("Public(%s) = %v", s, got)
		}
	}
}
