package policies

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one destination a tenant may connect to: a host name (exact, or
// "*." and a suffix for every name below it, not the suffix itself) or an
// IP address, and a port. A rule that names an address lets connections to
// that address even when it is loopback, link-local or private; a rule
// that names a host lets only public addresses that the name resolves to
// (package outbound does the resolving and the check).
type Rule struct {
	// Name is the host name, lower case without a final dot; for a
	// wildcard, the suffix without "*.". Empty when Addr is set.
	Name string
	// Wildcard marks a "*." rule: Name is the suffix.
	Wildcard bool
	// Addr is the address of an address rule.
	Addr netip.Addr
	// Port is the TCP port, 1 to 65535.
	Port uint16
}

// ParseRule reads "host:port", "*.suffix:port", "192.0.2.1:port" or
// "[2001:db8::1]:port".
func ParseRule(s string) (Rule, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Rule{}, fmt.Errorf("%q is not host:port (an IPv6 address goes in brackets: \"[::1]:5432\")", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return Rule{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	r := Rule{Port: uint16(p)}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return Rule{}, fmt.Errorf("%q: an address with a zone cannot be a destination", s)
		}
		r.Addr = a.Unmap()
		return r, nil
	}
	if strings.HasPrefix(host, "*.") {
		r.Wildcard, host = true, host[2:]
	}
	name, ok := NormalName(host)
	if !ok {
		return Rule{}, fmt.Errorf("%q: %q is neither an IP address nor a host name (letters, digits, '-' and '.'; non-ASCII names in their xn-- form; a wildcard only as a leading \"*.\")", s, host)
	}
	if r.Wildcard && !strings.Contains(name, ".") {
		return Rule{}, fmt.Errorf("%q: a wildcard needs a suffix of two labels at least (\"*.example.com\", not \"*.com\")", s)
	}
	r.Name = name
	return r, nil
}

// NormalName returns a host name in lower case without a final dot, and
// whether it is a valid DNS name: labels of 1 to 63 letters, digits and
// hyphens (not at either end), 253 bytes in all.
func NormalName(host string) (string, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || len(host) > 253 {
		return "", false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", false
	}
	return host, true
}

// String is the rule as tenant.toml spells it.
func (r Rule) String() string {
	p := strconv.Itoa(int(r.Port))
	switch {
	case r.Addr.IsValid():
		return net.JoinHostPort(r.Addr.String(), p)
	case r.Wildcard:
		return "*." + r.Name + ":" + p
	}
	return r.Name + ":" + p
}

// MatchesName reports whether the rule lets a connection to name (as
// NormalName returns it) on port.
func (r Rule) MatchesName(name string, port uint16) bool {
	if r.Port != port || r.Addr.IsValid() {
		return false
	}
	if r.Wildcard {
		return strings.HasSuffix(name, "."+r.Name)
	}
	return name == r.Name
}

// MatchesAddr reports whether the rule names addr (unmapped) and port.
func (r Rule) MatchesAddr(addr netip.Addr, port uint16) bool {
	return r.Port == port && r.Addr.IsValid() && r.Addr == addr.Unmap()
}

// Covers reports whether every connection n lets is one r lets too: the
// same port, and the same address, the same name, or a name (or narrower
// wildcard) below r's wildcard.
func (r Rule) Covers(n Rule) bool {
	switch {
	case r.Port != n.Port:
		return false
	case r.Addr.IsValid() || n.Addr.IsValid():
		return r.Addr == n.Addr
	case r.Wildcard:
		return strings.HasSuffix(n.Name, "."+r.Name) || n.Wildcard && n.Name == r.Name
	}
	return !n.Wildcard && n.Name == r.Name
}

// ParseRules parses a list of rules; the error names the index of the
// first bad one.
func ParseRules(list []string) ([]Rule, error) {
	rules := make([]Rule, 0, len(list))
	for i, s := range list {
		r, err := ParseRule(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}
