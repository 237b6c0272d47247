package server

import (
	"crypto/x509"
	"log/slog"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// outboundGate is the Dialer of t's instances: TenantOutboundGate with the
// server's CA pool, refusals in the tenant's log and every connection in
// its metrics.
func (s *Server) outboundGate(t *tenants.Tenant, log *slog.Logger) *outbound.Gate {
	return TenantOutboundGate(t, s.cfg.OutboundRootCAs, log, s.metrics.outbound(t.Name))
}

// TenantOutboundGate is the Dialer that serve gives the tenant t's
// instances (and wsgi-wasm exec its commands): its policy's rules,
// tenant-wide connection limit and connect timeout, roots to verify TLS
// servers (nil: the host's store), refusals logged to log and counted in
// metrics (each may be nil). A tenant without rules gets a Gate too, so
// that its refused attempts are logged and counted.
func TenantOutboundGate(t *tenants.Tenant, roots *x509.CertPool, log *slog.Logger, metrics *outbound.Metrics) *outbound.Gate {
	return outbound.New(outbound.Config{
		Rules: t.Policy.Outbound, MaxConns: t.Policy.OutboundTenantConns, ConnectTimeout: t.Policy.OutboundConnectTimeout,
		RootCAs: roots, Log: log, Metrics: metrics,
	})
}
