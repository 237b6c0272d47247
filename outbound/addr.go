package outbound

import "net/netip"

// special are ranges that Public refuses besides what netip's predicates
// name: "this network", carrier-grade NAT (often a cloud's internal
// network), IETF protocol assignments, benchmarking, reserved and
// broadcast; and the IPv6 ranges that carry an IPv4 address inside them
// (NAT64, 6to4, Teredo), which could reach a private IPv4 address, plus
// the deprecated site-local and the discard prefix.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("100::/64"),
}

// Public reports whether a is an address a name may resolve to and be
// connected to: not loopback, link-local (169.254.169.254, a cloud's
// metadata service, among them), private, unspecified, multicast, or in
// one of the special ranges. Addresses of other classes are connected to
// only when a rule names them literally.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsPrivate() || a.IsUnspecified() {
		return false
	}
	for _, p := range special {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
