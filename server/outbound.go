package server

import (
	"log/slog"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// outboundGate is the Dialer of t's instances: its policy's rules and
// limits, the server's CA pool, refusals in the tenant's log and every
// connection in its metrics. A tenant without rules gets a Gate too, so
// its refused attempts are logged and counted.
func (s *Server) outboundGate(t *tenants.Tenant, log *slog.Logger) *outbound.Gate {
	return outbound.New(outbound.Config{
		Rules: t.Policy.Outbound, MaxConns: t.Policy.OutboundTenantConns, ConnectTimeout: t.Policy.OutboundConnectTimeout,
		RootCAs: s.cfg.OutboundRootCAs, Log: log, Metrics: s.metrics.outbound(t.Name),
	})
}
