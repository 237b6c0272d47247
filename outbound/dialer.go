package outbound

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// Dialer opens one tenant's outbound connections. It is safe for
// concurrent use by the tenant's instances.
type Dialer interface {
	// Dial connects to host:port over TCP, host being a name or an IP
	// literal as the guest gave it, if the tenant's rules allow it and its
	// limits have room; ctx bounds resolution and connection. A refusal is
	// a *RefusedError. The connection's Close gives its slot back.
	Dial(ctx context.Context, host string, port int) (net.Conn, error)
	// RootCAs is the pool that verifies servers' certificates when the
	// guest loads none of its own: the host's store, or the server
	// configuration's CA file.
	RootCAs() *x509.CertPool
}

// RefusedError is a connection refused by the host before anything left
// it: no rule allows the destination, the address it resolves to is of a
// refused class, or a limit is reached. Its message names the destination
// and what is missing, for the guest's exception and the tenant's log.
type RefusedError struct {
	// Dest is the destination as asked, host:port.
	Dest string
	// Reason says why, e.g. `no outbound rule allows it (add "db.internal:5432" to [policy] outbound)`.
	Reason string
	// Limit is true when a connection limit refused it (the guest sees
	// "too many open connections" rather than "permission denied").
	Limit bool
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("outbound: connection to %s refused: %s", e.Dest, e.Reason)
}

// Deny is the Dialer of a tenant with no outbound rules: it refuses every
// destination.
type Deny struct{}

// Dial refuses.
func (Deny) Dial(_ context.Context, host string, port int) (net.Conn, error) {
	dest := net.JoinHostPort(host, fmt.Sprint(port))
	return nil, &RefusedError{Dest: dest, Reason: fmt.Sprintf("no outbound rule allows it (add %q to [policy] outbound in tenant.toml)", dest)}
}

// RootCAs is nil: the host's store.
func (Deny) RootCAs() *x509.CertPool { return nil }

// LoadRootCAs reads a PEM file of CA certificates, for Config.RootCAs.
func LoadRootCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("outbound: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("outbound: CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}
