// Package outbound decides and makes a tenant's outbound TCP connections:
// the rules of its policy (deny by default), name resolution done by the
// host and only for names a rule allows, the check of the address actually
// connected to (loopback, link-local, private and unspecified addresses
// refused unless a rule names the address literally), per-tenant limits
// and metrics. It knows nothing of WebAssembly: the sandbox's socket host
// functions (hostabi/ABI.md "Outbound connections") call a Dialer and move
// bytes over the net.Conn it returns.
package outbound
