package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// Who may serve a host. A tenant names its hosts in its own tenant.toml, so
// without a rule a tenant could name another's host and take its requests
// (and their cookies). Two rules prevent that:
//
//   - A host pattern belongs to one tenant, and so do the names below a
//     wildcard ("*.shop.example" reserves "pay.shop.example"; only the
//     catch-all "*" reserves nothing). When a second tenant claims one, the
//     newcomer is refused and the tenant that claimed it before keeps it;
//     when neither did (at start), both are refused and the host answers
//     503 until the operator resolves it.
//   - The operator may assign hosts in the server config ([hosts]: tenant
//     -> patterns it may claim). Then a tenant may claim only what it is
//     assigned, and hosts assigned to several tenants may be shared by
//     them with different path prefixes.

// hostsAssigned checks t's hosts against the operator's assignment, if any.
func (s *Server) hostsAssigned(t *tenants.Tenant) error {
	if s.cfg.HostAssignments == nil {
		return nil
	}
	allowed, ok := s.cfg.HostAssignments[t.Name]
	if !ok {
		return fmt.Errorf("hosts: the server config's [hosts] assigns no hosts to tenant %s", t.Name)
	}
	for _, h := range t.Hosts {
		if !slices.ContainsFunc(allowed, func(a string) bool { return assignmentCovers(a, h) }) {
			return fmt.Errorf("hosts: %q is not among the hosts the server config assigns to tenant %s (%s)", h, t.Name, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// assignmentCovers reports whether the operator's pattern a lets a tenant
// claim pattern h: the same pattern, or a name or wildcard below a
// wildcard ("*.shop.example" covers "a.shop.example" and
// "*.eu.shop.example"); "*" covers everything.
func assignmentCovers(a, h string) bool {
	a, h = strings.ToLower(a), strings.ToLower(h)
	switch {
	case a == h || a == "*":
		return true
	case strings.HasPrefix(a, "*.") && h != "*":
		return strings.HasSuffix(strings.TrimPrefix(h, "*"), a[1:])
	}
	return false
}

// mayHold reports whether a tenant that failed to load may keep host
// answering 503 (rather than reaching a wildcard or the catch-all): with
// the operator's [hosts], only for hosts assigned to it, so that a tenant
// cannot take down a name it merely lists.
func (s *Server) mayHold(name, host string) bool {
	if s.cfg.HostAssignments == nil {
		return true
	}
	return slices.ContainsFunc(s.cfg.HostAssignments[name], func(a string) bool { return assignmentCovers(a, host) })
}

// ownedByAnother reports whether a tenant of current names host or a
// wildcard over it (the catch-all "*" does not count).
func ownedByAnother(current map[string]*loaded, host string) bool {
	for _, l := range current {
		for _, h := range l.tenant.Hosts {
			if h = strings.ToLower(h); h != "*" && assignmentCovers(h, host) {
				return true
			}
		}
	}
	return false
}

// claim is one tenant's claim on a host: the pattern it names (the host
// itself, or a wildcard over it) and its path prefix.
type claim struct {
	name, pattern, prefix string
}

// refuseHostConflicts finds the tenants of current whose host claims
// conflict, and returns why each of the refused ones is refused. Hosts
// that no tenant keeps get a reason in broken, so they answer 503 rather
// than falling through to a wildcard or the catch-all.
func (s *Server) refuseHostConflicts(current, previous map[string]*loaded, broken map[string]string) map[string]error {
	claims := hostClaims(current)
	if s.cfg.HostAssignments == nil {
		addCoveringClaims(claims)
	}
	refused := map[string]error{}
	for _, host := range slices.Sorted(maps.Keys(claims)) {
		for _, group := range s.conflictGroups(claims[host]) {
			var incumbents, newcomers []string
			for _, c := range group {
				if old, ok := previous[c.name]; ok && claimsHost(old, c.pattern, c.prefix, s.cfg.HostAssignments != nil) {
					incumbents = append(incumbents, c.name)
				} else {
					newcomers = append(newcomers, c.name)
				}
			}
			losers := newcomers
			if len(incumbents) == 0 {
				losers = names(group)
				broken[host] = fmt.Sprintf("host %q is claimed by tenants %s", host, strings.Join(losers, ", "))
			}
			for _, name := range losers {
				others := slices.DeleteFunc(names(group), func(n string) bool { return n == name })
				refused[name] = fmt.Errorf("hosts: %q is also claimed by tenant %s (a wildcard reserves the names below it); a host belongs to one tenant unless the server config's [hosts] assigns it to several (with different path_prefix)", host, strings.Join(others, ", "))
			}
		}
	}
	return refused
}

// conflictGroups splits the claims on one host into the sets that
// conflict: all of them when hosts are not assigned by the operator, else
// those with the same path prefix.
func (s *Server) conflictGroups(cs []claim) [][]claim {
	if len(cs) < 2 {
		return nil
	}
	if s.cfg.HostAssignments == nil {
		return [][]claim{cs}
	}
	byPrefix := map[string][]claim{}
	for _, c := range cs {
		byPrefix[c.prefix] = append(byPrefix[c.prefix], c)
	}
	var out [][]claim
	for _, p := range slices.Sorted(maps.Keys(byPrefix)) {
		if len(byPrefix[p]) > 1 {
			out = append(out, byPrefix[p])
		}
	}
	return out
}

// hostClaims lists, for each host pattern, the tenants that claim it.
func hostClaims(current map[string]*loaded) map[string][]claim {
	claims := map[string][]claim{}
	for _, name := range slices.Sorted(maps.Keys(current)) {
		t := current[name].tenant
		for _, h := range t.Hosts {
			h = strings.ToLower(h)
			claims[h] = append(claims[h], claim{name: name, pattern: h, prefix: t.PathPrefix})
		}
	}
	return claims
}

// addCoveringClaims adds to each host the claims of other tenants'
// wildcards over it ("*" excepted), so that a name below another tenant's
// wildcard conflicts with it.
func addCoveringClaims(claims map[string][]claim) {
	var wildcards []claim
	for _, h := range slices.Sorted(maps.Keys(claims)) {
		if strings.HasPrefix(h, "*.") {
			wildcards = append(wildcards, claims[h]...)
		}
	}
	for h, cs := range claims {
		for _, w := range wildcards {
			if w.pattern != h && assignmentCovers(w.pattern, h) && !slices.ContainsFunc(cs, func(c claim) bool { return c.name == w.name }) {
				claims[h] = append(claims[h], w)
			}
		}
	}
}

// claimsHost reports whether l claims host (with prefix, when prefixes
// tell claims apart).
func claimsHost(l *loaded, host, prefix string, byPrefix bool) bool {
	for _, h := range l.tenant.Hosts {
		if strings.ToLower(h) == host && (!byPrefix || l.tenant.PathPrefix == prefix) {
			return true
		}
	}
	return false
}

func names(cs []claim) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}

// keepsNoConflict reports whether l (a tenant's previous version) can
// serve beside current without sharing a host that the rules above would
// refuse.
func (s *Server) keepsNoConflict(name string, l *loaded, current map[string]*loaded) bool {
	withOld := maps.Clone(current)
	withOld[name] = l
	claims := hostClaims(withOld)
	if s.cfg.HostAssignments == nil {
		addCoveringClaims(claims)
	}
	for _, h := range l.tenant.Hosts {
		for _, c := range claims[strings.ToLower(h)] {
			if c.name != name && (s.cfg.HostAssignments == nil || c.prefix == l.tenant.PathPrefix) {
				return false
			}
		}
	}
	return true
}
