package policies

import (
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tomlfile"
)

// Keys are Overrides as TOML spells them: the [policy] table of a
// tenant.toml and the [ceiling] table of the server config.
type Keys struct {
	RequestTimeout *tomlfile.Duration `toml:"request_timeout"`
	MemoryMB       *int               `toml:"memory_mb"`
	MaxBodyBytes   *int64             `toml:"max_body_bytes"`
	MaxInstances   *int               `toml:"max_instances"`
	QueueLength    *int               `toml:"queue_length"`
	WritableData   *bool              `toml:"writable_data"`
	DataMaxMB      *int               `toml:"data_max_mb"`

	Outbound               *[]string          `toml:"outbound"`
	OutboundConnections    *int               `toml:"outbound_connections"`
	OutboundTenantConns    *int               `toml:"outbound_tenant_connections"`
	OutboundConnectTimeout *tomlfile.Duration `toml:"outbound_connect_timeout"`
}

// Overrides are the keys that were set.
func (k Keys) Overrides() Overrides {
	return Overrides{
		RequestTimeout: (*time.Duration)(k.RequestTimeout), MemoryMB: k.MemoryMB, MaxBodyBytes: k.MaxBodyBytes,
		MaxInstances: k.MaxInstances, QueueLength: k.QueueLength, WritableData: k.WritableData, DataMaxMB: k.DataMaxMB,
		Outbound: k.Outbound, OutboundConnections: k.OutboundConnections, OutboundTenantConns: k.OutboundTenantConns,
		OutboundConnectTimeout: (*time.Duration)(k.OutboundConnectTimeout),
	}
}
