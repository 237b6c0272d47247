package outbound

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

// Config is what a Gate enforces for one tenant.
type Config struct {
	// Rules are the tenant's outbound rules; none refuses every destination.
	Rules []policies.Rule
	// MaxConns is how many connections the tenant's instances may hold
	// open at once, all together; past it Dial refuses (Limit).
	MaxConns int
	// ConnectTimeout bounds resolving and connecting, within ctx.
	ConnectTimeout time.Duration
	// RootCAs verifies servers' certificates when the guest loads none of
	// its own; nil is the host's store.
	RootCAs *x509.CertPool
	// Resolver looks names up; nil is net.DefaultResolver.
	Resolver Resolver
	// Log receives a line for each refusal (at most refusalLogRate a
	// second, the rest counted); it should name the tenant. Nil discards.
	Log *slog.Logger
	// Metrics counts connections and bytes; nil counts nothing.
	Metrics *Metrics
}

// Resolver is what a Gate needs of *net.Resolver.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Metrics are one tenant's series. Refused is curried down to its "reason"
// label: rule, address or limit.
type Metrics struct {
	Opened, BytesOut, BytesIn prometheus.Counter
	Refused                   *prometheus.CounterVec
}

// Reasons of a refusal, as Metrics.Refused labels them.
const (
	ReasonRule    = "rule"    // no rule allows the destination
	ReasonAddress = "address" // a name's addresses are all of a refused class
	ReasonLimit   = "limit"   // the tenant's connection limit is reached
)

// refusalLogRate bounds the refusal lines a tenant's loop can write.
const refusalLogRate = 10

// Gate is the Dialer of one tenant: it allows what the rules allow and
// nothing else, resolving only names a rule allows, and connects only to
// addresses it checked.
type Gate struct {
	cfg     Config
	open    atomic.Int64
	logs    *rate.Limiter
	unseen  atomic.Int64 // refusal lines not logged since the last one
	dialTCP func(ctx context.Context, network, addr string) (net.Conn, error)
}

var _ Dialer = (*Gate)(nil)

// New returns the Gate of cfg.
func New(cfg Config) *Gate {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	return &Gate{cfg: cfg, logs: rate.NewLimiter(refusalLogRate, refusalLogRate), dialTCP: d.DialContext}
}

// Open is how many of the tenant's connections are open now.
func (g *Gate) Open() int { return int(g.open.Load()) }

// RootCAs is Config.RootCAs.
func (g *Gate) RootCAs() *x509.CertPool { return g.cfg.RootCAs }

// Dial connects to host:port if a rule allows it (see package doc).
func (g *Gate) Dial(ctx context.Context, host string, port int) (net.Conn, error) {
	dest := net.JoinHostPort(host, strconv.Itoa(port))
	if port < 1 || port > 65535 {
		return nil, g.refuse(dest, ReasonRule, fmt.Sprintf("port %d is not from 1 to 65535", port))
	}
	addrs, err := g.allowedAddrs(ctx, host, uint16(port), dest)
	if err != nil {
		return nil, err
	}
	if n := g.open.Add(1); n > int64(g.cfg.MaxConns) {
		g.open.Add(-1)
		return nil, g.refuse(dest, ReasonLimit, fmt.Sprintf("the tenant has %d outbound connections open, its limit (outbound_tenant_connections)", g.cfg.MaxConns))
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	var errs []error
	for _, a := range addrs {
		c, err := g.dialTCP(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			if g.cfg.Metrics != nil {
				g.cfg.Metrics.Opened.Inc()
			}
			return &conn{Conn: c, gate: g}, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	g.open.Add(-1)
	return nil, fmt.Errorf("outbound: connect to %s: %w", dest, errors.Join(errs...))
}

// allowedAddrs returns the addresses of host that a rule allows on port,
// resolving host only if it is a name a rule allows.
func (g *Gate) allowedAddrs(ctx context.Context, host string, port uint16, dest string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.Zone() == "" && g.namesAddr(a, port) {
			return []netip.Addr{a}, nil
		}
		return nil, g.refuse(dest, ReasonRule, fmt.Sprintf("no outbound rule names this address (add %q to [policy] outbound in tenant.toml)", netip.AddrPortFrom(a.WithZone(""), port).String()))
	}
	name, ok := policies.NormalName(host)
	if !ok {
		return nil, g.refuse(dest, ReasonRule, "not a valid host name or IP address")
	}
	allowed := false
	for _, r := range g.cfg.Rules {
		if r.MatchesName(name, port) {
			allowed = true
			break
		}
	}
	if !allowed {
		return nil, g.refuse(dest, ReasonRule, fmt.Sprintf("no outbound rule allows it (add %q to [policy] outbound in tenant.toml); it was not looked up", net.JoinHostPort(name, strconv.Itoa(int(port)))))
	}
	lctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	found, err := g.cfg.Resolver.LookupNetIP(lctx, "ip", name)
	if err == nil && len(found) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		return nil, fmt.Errorf("outbound: resolve %s: %w", name, err)
	}
	var addrs []netip.Addr
	var refused []string
	for _, a := range found {
		a = a.Unmap()
		if Public(a) || g.namesAddr(a, port) {
			addrs = append(addrs, a)
		} else {
			refused = append(refused, a.String())
		}
	}
	if len(addrs) == 0 {
		return nil, g.refuse(dest, ReasonAddress, fmt.Sprintf("%s resolves to %v, not public addresses; a rule naming an address allows it (e.g. %q)", name, refused, netip.AddrPortFrom(found[0].Unmap(), port).String()))
	}
	return addrs, nil
}

func (g *Gate) namesAddr(a netip.Addr, port uint16) bool {
	for _, r := range g.cfg.Rules {
		if r.MatchesAddr(a, port) {
			return true
		}
	}
	return false
}

func (g *Gate) refuse(dest, reason, why string) error {
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.Refused.WithLabelValues(reason).Inc()
	}
	if g.logs.Allow() {
		g.cfg.Log.Warn("outbound connection refused", "dest", dest, "reason", why, "unlogged_refusals", g.unseen.Swap(0))
	} else {
		g.unseen.Add(1)
	}
	return &RefusedError{Dest: dest, Reason: why, Limit: reason == ReasonLimit}
}

// conn is an open connection of the tenant: it counts its bytes and gives
// its slot back once, when closed.
type conn struct {
	net.Conn
	gate  *Gate
	close sync.Once
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if m := c.gate.cfg.Metrics; m != nil && n > 0 {
		m.BytesIn.Add(float64(n))
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if m := c.gate.cfg.Metrics; m != nil && n > 0 {
		m.BytesOut.Add(float64(n))
	}
	return n, err
}

// CloseWrite shuts the sending side (the guest's shutdown(SHUT_WR)).
func (c *conn) CloseWrite() error {
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return tc.CloseWrite()
	}
	return nil
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.close.Do(func() { c.gate.open.Add(-1) })
	return err
}
