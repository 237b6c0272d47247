// Package policies holds the limits and permissions a tenant runs under:
// named presets, a tenant's overrides, and the operator's server-wide
// ceiling that no tenant may exceed. Plain data and validation only.
package policies

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy is what one tenant may use. Every limit means what it says,
// zero included, and is checked against the ceiling as it is used: no
// value is a stand-in for "no limit" or "the default".
type Policy struct {
	RequestTimeout time.Duration // per request, from its arrival: the wait for an instance counts (more than 0)
	MemoryMB       int           // linear memory cap of each instance (32 to MaxMemoryMB)
	MaxBodyBytes   int64         // request body limit (413 above; 0: no body accepted)
	MaxInstances   int           // concurrent instances (at least 1)
	QueueLength    int           // requests waiting for an instance (503 above; 0: none wait)
	WritableData   bool          // a writable data folder at /data
	DataMaxMB      int           // what the data folder may hold (writes past it fail; at least 1)

	// Outbound connections (package outbound). A tenant's Outbound is what
	// it may connect to: nothing when empty. In the ceiling, Outbound
	// bounds every tenant's rules when OutboundLimited is set (an empty
	// list then forbids outbound connections); unset, any rule is allowed.
	Outbound               []Rule
	OutboundLimited        bool          // ceiling only: Outbound bounds tenants' rules
	OutboundConnections    int           // open at once per instance (0: none)
	OutboundTenantConns    int           // open at once by all the tenant's instances (0: none)
	OutboundConnectTimeout time.Duration // for one connection to be made (more than 0)
}

// Presets are the named policies a tenant can start from.
// Each has no outbound rules: a tenant lists what it connects to.
var Presets = map[string]Policy{
	"default": {RequestTimeout: 30 * time.Second, MemoryMB: 512, MaxBodyBytes: 64 << 20, MaxInstances: 4, QueueLength: 64, WritableData: false, DataMaxMB: 1024,
		OutboundConnections: 8, OutboundTenantConns: 32, OutboundConnectTimeout: 10 * time.Second},
	"strict": {RequestTimeout: 5 * time.Second, MemoryMB: 128, MaxBodyBytes: 1 << 20, MaxInstances: 1, QueueLength: 8, WritableData: false, DataMaxMB: 64,
		OutboundConnections: 2, OutboundTenantConns: 2, OutboundConnectTimeout: 5 * time.Second},
	"data": {RequestTimeout: 30 * time.Second, MemoryMB: 512, MaxBodyBytes: 64 << 20, MaxInstances: 2, QueueLength: 64, WritableData: true, DataMaxMB: 1024,
		OutboundConnections: 8, OutboundTenantConns: 16, OutboundConnectTimeout: 10 * time.Second},
}

// MaxMemoryMB is the most linear memory a wasm32 instance can address.
const MaxMemoryMB = 4096

// DefaultCeiling is the server-wide ceiling when the operator sets none.
var DefaultCeiling = Policy{RequestTimeout: 5 * time.Minute, MemoryMB: 2048, MaxBodyBytes: 1 << 30, MaxInstances: 16, QueueLength: 1024, WritableData: true, DataMaxMB: 10240,
	OutboundConnections: 64, OutboundTenantConns: 256, OutboundConnectTimeout: time.Minute}

// Overrides are a tenant's changes to its preset; nil fields keep it.
type Overrides struct {
	RequestTimeout *time.Duration
	MemoryMB       *int
	MaxBodyBytes   *int64
	MaxInstances   *int
	QueueLength    *int
	WritableData   *bool
	DataMaxMB      *int

	// Outbound is the rule list as written; Resolve and Ceiling parse it.
	Outbound               *[]string
	OutboundConnections    *int
	OutboundTenantConns    *int
	OutboundConnectTimeout *time.Duration
}

// FieldError names the policy key that is wrong and why.
type FieldError struct {
	Key, Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("policy.%s: %s", e.Key, e.Reason) }

// Resolve applies overrides to the named preset and checks the result
// against the ceiling: a tenant can tighten what the operator allows, never
// loosen it.
func Resolve(preset string, o Overrides, ceiling Policy) (Policy, error) {
	if preset == "" {
		preset = "default"
	}
	p, ok := Presets[preset]
	if !ok {
		return Policy{}, &FieldError{Key: "preset", Reason: fmt.Sprintf("unknown preset %q (have %s)", preset, presetNames())}
	}
	p = o.Apply(p)
	if o.Outbound != nil {
		rules, err := ParseRules(*o.Outbound)
		if err != nil {
			return Policy{}, outboundError(err)
		}
		p.Outbound = rules
	}
	return p, p.within(ceiling)
}

// outboundError is a ParseRules error as a FieldError: "outbound[2]: ...".
func outboundError(err error) error {
	msg := err.Error()
	idx, reason, _ := strings.Cut(msg, ": ")
	return &FieldError{Key: "outbound" + idx, Reason: reason}
}

// Apply returns p with the overrides that are set.
func (o Overrides) Apply(p Policy) Policy {
	if o.RequestTimeout != nil {
		p.RequestTimeout = *o.RequestTimeout
	}
	if o.MemoryMB != nil {
		p.MemoryMB = *o.MemoryMB
	}
	if o.MaxBodyBytes != nil {
		p.MaxBodyBytes = *o.MaxBodyBytes
	}
	if o.MaxInstances != nil {
		p.MaxInstances = *o.MaxInstances
	}
	if o.QueueLength != nil {
		p.QueueLength = *o.QueueLength
	}
	if o.WritableData != nil {
		p.WritableData = *o.WritableData
	}
	if o.DataMaxMB != nil {
		p.DataMaxMB = *o.DataMaxMB
	}
	if o.OutboundConnections != nil {
		p.OutboundConnections = *o.OutboundConnections
	}
	if o.OutboundTenantConns != nil {
		p.OutboundTenantConns = *o.OutboundTenantConns
	}
	if o.OutboundConnectTimeout != nil {
		p.OutboundConnectTimeout = *o.OutboundConnectTimeout
	}
	return p
}

// Ceiling is DefaultCeiling with the operator's overrides (the server
// config file's [ceiling]), each limit checked to be usable. A lowered
// ceiling applies to presets too: a tenant whose policy ends above it is
// not loaded, with the key that is over.
func Ceiling(o Overrides) (Policy, error) {
	c := o.Apply(DefaultCeiling)
	if o.Outbound != nil {
		rules, err := ParseRules(*o.Outbound)
		if err != nil {
			return Policy{}, outboundError(err)
		}
		c.Outbound, c.OutboundLimited = rules, true
	}
	for _, ch := range []struct {
		key  string
		bad  bool
		want string
	}{
		{"request_timeout", c.RequestTimeout <= 0, "more than 0"},
		{"memory_mb", c.MemoryMB < 32 || c.MemoryMB > MaxMemoryMB, "from 32 to 4096 (wasm32's whole address space)"},
		{"max_body_bytes", c.MaxBodyBytes < 0, "0 or more"},
		{"max_instances", c.MaxInstances < 1, "at least 1"},
		{"queue_length", c.QueueLength < 0, "0 or more"},
		{"data_max_mb", c.DataMaxMB < 1, "at least 1"},
		{"outbound_connections", c.OutboundConnections < 0, "0 or more"},
		{"outbound_tenant_connections", c.OutboundTenantConns < 0, "0 or more"},
		{"outbound_connect_timeout", c.OutboundConnectTimeout <= 0, "more than 0"},
	} {
		if ch.bad {
			return Policy{}, &FieldError{Key: ch.key, Reason: "must be " + ch.want}
		}
	}
	return c, nil
}

func (p Policy) within(c Policy) error {
	checks := []struct {
		key       string
		bad       bool
		low, high any
	}{
		{"request_timeout", p.RequestTimeout <= 0 || p.RequestTimeout > c.RequestTimeout, p.RequestTimeout, c.RequestTimeout},
		{"memory_mb", p.MemoryMB < 32 || p.MemoryMB > c.MemoryMB, p.MemoryMB, c.MemoryMB},
		{"max_body_bytes", p.MaxBodyBytes < 0 || p.MaxBodyBytes > c.MaxBodyBytes, p.MaxBodyBytes, c.MaxBodyBytes},
		{"max_instances", p.MaxInstances < 1 || p.MaxInstances > c.MaxInstances, p.MaxInstances, c.MaxInstances},
		{"queue_length", p.QueueLength < 0 || p.QueueLength > c.QueueLength, p.QueueLength, c.QueueLength},
		{"data_max_mb", p.DataMaxMB < 1 || p.DataMaxMB > c.DataMaxMB, p.DataMaxMB, c.DataMaxMB},
		{"outbound_connections", p.OutboundConnections < 0 || p.OutboundConnections > c.OutboundConnections, p.OutboundConnections, c.OutboundConnections},
		{"outbound_tenant_connections", p.OutboundTenantConns < 0 || p.OutboundTenantConns > c.OutboundTenantConns, p.OutboundTenantConns, c.OutboundTenantConns},
		{"outbound_connect_timeout", p.OutboundConnectTimeout <= 0 || p.OutboundConnectTimeout > c.OutboundConnectTimeout, p.OutboundConnectTimeout, c.OutboundConnectTimeout},
	}
	for _, ch := range checks {
		if ch.bad {
			return &FieldError{Key: ch.key, Reason: fmt.Sprintf("%v is outside what the server allows (at most %v)", ch.low, ch.high)}
		}
	}
	if p.WritableData && !c.WritableData {
		return &FieldError{Key: "writable_data", Reason: "the server does not allow writable data folders"}
	}
	if c.OutboundLimited {
		for i, r := range p.Outbound {
			if !c.allowsRule(r) {
				reason := fmt.Sprintf("%q is not within the server's outbound rules (%s)", r, ruleList(c.Outbound))
				if len(c.Outbound) == 0 {
					reason = fmt.Sprintf("%q: the server allows no outbound connections", r)
				}
				return &FieldError{Key: fmt.Sprintf("outbound[%d]", i), Reason: reason}
			}
		}
	}
	return nil
}

// allowsRule reports whether one of the ceiling's rules covers r.
func (p Policy) allowsRule(r Rule) bool {
	for _, c := range p.Outbound {
		if c.Covers(r) {
			return true
		}
	}
	return false
}

func ruleList(rules []Rule) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

func presetNames() string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
