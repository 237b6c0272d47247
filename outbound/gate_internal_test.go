package outbound

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

type table map[string][]netip.Addr

func (t table) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return t[host], nil
}

// A name resolving to public and inside addresses is connected to at the
// public ones only, in the resolver's order.
func TestDialsOnlyPublicAddresses(t *testing.T) {
	r, _ := policies.ParseRules([]string{"*.example.com:443"})
	g := New(Config{Rules: r, MaxConns: 4, ConnectTimeout: time.Second, Resolver: table{
		"api.example.com": {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("2606:2800:220:1::1")},
	}})
	var dialed []string
	g.dialTCP = func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		return nil, errors.New("unreachable here")
	}
	if _, err := g.Dial(context.Background(), "api.example.com", 443); err == nil {
		t.Fatal("connected")
	}
	if len(dialed) != 2 || dialed[0] != "93.184.216.34:443" || dialed[1] != "[2606:2800:220:1::1]:443" {
		t.Fatalf("dialed %v", dialed)
	}
	if g.Open() != 0 {
		t.Fatalf("failed dials hold %d slots", g.Open())
	}
}
