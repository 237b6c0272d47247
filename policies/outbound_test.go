package policies_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

func TestParseRule(t *testing.T) {
	for _, c := range []struct {
		in, want string // want is String() of the rule, or the error's substring after "!"
	}{
		{"db.internal:5432", "db.internal:5432"},
		{"API.Example.COM.:443", "api.example.com:443"},
		{"*.example.org:443", "*.example.org:443"},
		{"10.0.0.5:5432", "10.0.0.5:5432"},
		{"[::1]:6379", "[::1]:6379"},
		{"[::ffff:127.0.0.1]:6379", "127.0.0.1:6379"},
		{"db.internal", "!not host:port"},
		{"db.internal:0", "!port"},
		{"db.internal:65536", "!port"},
		{"db.internal:http", "!port"},
		{"*.com:443", "!two labels"},
		{"*:443", "!neither"},
		{"a.*.example.com:443", "!neither"},
		{"exa mple.com:443", "!neither"},
		{"-bad.example:443", "!neither"},
		{"bücher.example:443", "!neither"},
		{"[fe80::1%eth0]:22", "!zone"},
		{"::1:6379", "!not host:port"},
	} {
		r, err := policies.ParseRule(c.in)
		if want, bad := strings.CutPrefix(c.want, "!"); bad {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ParseRule(%q) = %v, %v; want an error saying %q", c.in, r, err, want)
			}
			continue
		}
		if err != nil || r.String() != c.want {
			t.Errorf("ParseRule(%q) = %q, %v; want %q", c.in, r, err, c.want)
		}
	}
}

func TestRuleMatches(t *testing.T) {
	rule := func(s string) policies.Rule {
		r, err := policies.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	exact, wild, addr := rule("db.internal:5432"), rule("*.example.org:443"), rule("127.0.0.1:6379")
	for _, c := range []struct {
		r    policies.Rule
		name string
		port uint16
		want bool
	}{
		{exact, "db.internal", 5432, true},
		{exact, "db.internal", 5433, false},
		{exact, "x.db.internal", 5432, false},
		{wild, "api.example.org", 443, true},
		{wild, "a.b.example.org", 443, true},
		{wild, "example.org", 443, false},
		{wild, "badexample.org", 443, false},
		{addr, "127.0.0.1", 6379, false}, // an address rule never matches a name
	} {
		if got := c.r.MatchesName(c.name, c.port); got != c.want {
			t.Errorf("%v.MatchesName(%q, %d) = %v", c.r, c.name, c.port, got)
		}
	}
	if !addr.MatchesAddr(netip.MustParseAddr("::ffff:127.0.0.1"), 6379) || addr.MatchesAddr(netip.MustParseAddr("127.0.0.2"), 6379) ||
		exact.MatchesAddr(netip.MustParseAddr("127.0.0.1"), 5432) {
		t.Error("MatchesAddr")
	}
	for _, c := range []struct {
		ceiling, tenant string
		want            bool
	}{
		{"*.example.org:443", "api.example.org:443", true},
		{"*.example.org:443", "*.api.example.org:443", true},
		{"*.example.org:443", "*.example.org:443", true},
		{"*.example.org:443", "example.org:443", false},
		{"*.example.org:443", "api.example.org:80", false},
		{"api.example.org:443", "*.api.example.org:443", false},
		{"api.example.org:443", "api.example.org:443", true},
		{"10.0.0.5:5432", "10.0.0.5:5432", true},
		{"*.example.org:443", "10.0.0.5:443", false},
		{"10.0.0.5:5432", "db.example.org:5432", false},
	} {
		if got := rule(c.ceiling).Covers(rule(c.tenant)); got != c.want {
			t.Errorf("%s covers %s = %v", c.ceiling, c.tenant, got)
		}
	}
}

func TestOutboundWithinCeiling(t *testing.T) {
	list := func(s ...string) *[]string { return &s }
	open, err := policies.Ceiling(policies.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	limited, err := policies.Ceiling(policies.Overrides{Outbound: list("*.example.org:443", "10.0.0.5:5432")})
	if err != nil {
		t.Fatal(err)
	}
	none, err := policies.Ceiling(policies.Overrides{Outbound: list()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		ceiling policies.Policy
		rules   *[]string
		wantKey string // "" when accepted
	}{
		{"no rules, default", open, nil, ""},
		{"any rule under an open ceiling", open, list("db.internal:5432", "[::1]:6379"), ""},
		{"rules within the ceiling", limited, list("api.example.org:443", "10.0.0.5:5432"), ""},
		{"a rule outside", limited, list("api.example.org:443", "db.internal:5432"), "outbound[1]"},
		{"an empty ceiling forbids", none, list("api.example.org:443"), "outbound[0]"},
		{"an empty ceiling takes no rules", none, list(), ""},
		{"a bad rule", open, list("ok.example:1", "nope"), "outbound[1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := policies.Resolve("", policies.Overrides{Outbound: c.rules}, c.ceiling)
			var fe *policies.FieldError
			switch {
			case c.wantKey == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantKey == "":
				if c.rules != nil && len(p.Outbound) != len(*c.rules) {
					t.Fatalf("rules %v from %v", p.Outbound, *c.rules)
				}
			case !errors.As(err, &fe) || fe.Key != c.wantKey || fe.Reason == "":
				t.Fatalf("error %v, want one on key %s", err, c.wantKey)
			}
		})
	}
	if p, _ := policies.Resolve("", policies.Overrides{}, open); len(p.Outbound) != 0 || p.OutboundConnections == 0 {
		t.Errorf("the default preset: outbound %v, %d connections an instance", p.Outbound, p.OutboundConnections)
	}
	zero := 0
	if _, err := policies.Resolve("", policies.Overrides{OutboundConnections: &zero}, open); err != nil {
		t.Errorf("outbound_connections = 0 (none) refused: %v", err)
	}
	many := 65
	if _, err := policies.Resolve("", policies.Overrides{OutboundConnections: &many}, open); err == nil {
		t.Error("65 connections an instance passed a ceiling of 64")
	}
}
