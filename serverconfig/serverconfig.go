// Package serverconfig reads the server config file of `wsgi-wasm serve
// --config FILE`: the server-wide settings that are also flags (listeners,
// folders, the memory budget, timeouts) and the ceiling that no tenant's
// policy may exceed. It is strict like tenant.toml: unknown keys are errors
// naming the file, the line and the key. Plain data and validation only.
package serverconfig

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tomlfile"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// File is a server config file, validated. A nil field was not in the file:
// the flag (or its default) decides. Relative paths in the file are taken
// from the file's folder.
type File struct {
	Path string // the file, absolute

	TenantDir         *string
	Bind              *[]string
	DataDir           *string
	MemoryBudgetMB    *int64
	ForwardedAllowIPs *[]string
	CertFile, KeyFile *string
	AdminBind         *string
	AccessLogFile     *string // "-" is standard output, "" none
	PythonDir         *string
	CacheDir          *string
	Snapshots         *bool
	SnapshotBase      *bool
	SnapshotDir       *string
	// OutboundCAFile holds the certificates (PEM) that verify the servers
	// tenants connect to over TLS, instead of the host's store.
	OutboundCAFile *string
	// MaxConnections and MaxConnectionsPerIP cap the front's open
	// connections (0: no cap).
	MaxConnections      *int
	MaxConnectionsPerIP *int

	GracefulTimeout   *time.Duration
	ReadHeaderTimeout *time.Duration
	IdleTimeout       *time.Duration
	WriteTimeout      *time.Duration

	// Ceiling is policies.DefaultCeiling with the file's [ceiling] applied.
	Ceiling policies.Policy
	// Hosts is the file's [hosts]: tenant name -> the host patterns it may
	// claim; nil when the file has no [hosts] (tenants claim freely, one
	// tenant a host).
	Hosts map[string][]string
}

// file mirrors the TOML document.
type file struct {
	TenantDir         *string             `toml:"tenant_dir"`
	Bind              *[]string           `toml:"bind"`
	DataDir           *string             `toml:"data_dir"`
	MemoryBudgetMB    *int64              `toml:"memory_budget_mb"`
	ForwardedAllowIPs *[]string           `toml:"forwarded_allow_ips"`
	CertFile          *string             `toml:"certfile"`
	KeyFile           *string             `toml:"keyfile"`
	AdminBind         *string             `toml:"admin_bind"`
	AccessLogFile     *string             `toml:"access_logfile"`
	PythonDir         *string             `toml:"python_dir"`
	CacheDir          *string             `toml:"cache_dir"`
	Snapshots         *bool               `toml:"snapshots"`
	SnapshotBase      *bool               `toml:"snapshot_base"`
	SnapshotDir       *string             `toml:"snapshot_dir"`
	OutboundCAFile    *string             `toml:"outbound_ca_file"`
	MaxConnections    *int                `toml:"max_connections"`
	MaxConnsPerIP     *int                `toml:"max_connections_per_ip"`
	GracefulTimeout   *tomlfile.Duration  `toml:"graceful_timeout"`
	ReadHeaderTimeout *tomlfile.Duration  `toml:"read_header_timeout"`
	IdleTimeout       *tomlfile.Duration  `toml:"idle_timeout"`
	WriteTimeout      *tomlfile.Duration  `toml:"write_timeout"`
	Ceiling           policies.Keys       `toml:"ceiling"`
	Hosts             map[string][]string `toml:"hosts"`
}

// Error is a problem in the server config file: the file, the line when
// known, the key and the reason.
type Error = tomlfile.Error

// Read reads and validates the server config file at path.
func Read(path string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	var f file
	if err := tomlfile.Decode(abs, &f); err != nil {
		return nil, err
	}
	bad := func(key, reason string) (*File, error) {
		return nil, &Error{File: abs, Line: tomlfile.Line(abs, key), Key: key, Reason: reason}
	}
	if f.Bind != nil && len(*f.Bind) == 0 {
		return bad("bind", "empty; list at least one address such as \"127.0.0.1:8000\"")
	}
	if f.MemoryBudgetMB != nil && *f.MemoryBudgetMB <= 0 {
		return bad("memory_budget_mb", "must be more than 0")
	}
	if f.TenantDir != nil && *f.TenantDir == "" {
		return bad("tenant_dir", "empty")
	}
	if (f.CertFile == nil) != (f.KeyFile == nil) {
		return bad("certfile", "certfile and keyfile go together")
	}
	for key, n := range map[string]*int{"max_connections": f.MaxConnections, "max_connections_per_ip": f.MaxConnsPerIP} {
		if n != nil && *n < 0 {
			return bad(key, "cannot be negative (0 is no cap)")
		}
	}
	for key, d := range map[string]*tomlfile.Duration{
		"graceful_timeout": f.GracefulTimeout, "read_header_timeout": f.ReadHeaderTimeout,
		"idle_timeout": f.IdleTimeout, "write_timeout": f.WriteTimeout,
	} {
		if d != nil && *d < 0 {
			return bad(key, "cannot be negative")
		}
	}
	ceiling, err := policies.Ceiling(f.Ceiling.Overrides())
	if err != nil {
		var fe *policies.FieldError
		if errors.As(err, &fe) {
			return bad("ceiling."+fe.Key, fe.Reason)
		}
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(f.Hosts)) {
		for _, h := range f.Hosts[name] {
			if !tenants.ValidHost(h) {
				return bad("hosts."+name, fmt.Sprintf("%q is not a host name, \"*.domain\" or \"*\"", h))
			}
		}
	}
	dir := filepath.Dir(abs)
	out := &File{Hosts: f.Hosts,
		Path: abs, Bind: f.Bind, MemoryBudgetMB: f.MemoryBudgetMB, ForwardedAllowIPs: f.ForwardedAllowIPs,
		AdminBind: f.AdminBind, Ceiling: ceiling,
		TenantDir: under(dir, f.TenantDir), DataDir: under(dir, f.DataDir),
		CertFile: under(dir, f.CertFile), KeyFile: under(dir, f.KeyFile),
		PythonDir: under(dir, f.PythonDir), CacheDir: under(dir, f.CacheDir),
		Snapshots: f.Snapshots, SnapshotBase: f.SnapshotBase, SnapshotDir: under(dir, f.SnapshotDir),
		OutboundCAFile: under(dir, f.OutboundCAFile),
		MaxConnections: f.MaxConnections, MaxConnectionsPerIP: f.MaxConnsPerIP,
		GracefulTimeout: (*time.Duration)(f.GracefulTimeout), ReadHeaderTimeout: (*time.Duration)(f.ReadHeaderTimeout),
		IdleTimeout: (*time.Duration)(f.IdleTimeout), WriteTimeout: (*time.Duration)(f.WriteTimeout),
	}
	if f.AccessLogFile != nil && *f.AccessLogFile != "-" {
		out.AccessLogFile = under(dir, f.AccessLogFile)
	} else {
		out.AccessLogFile = f.AccessLogFile
	}
	return out, nil
}

// under makes a relative, non-empty path relative to dir.
func under(dir string, p *string) *string {
	if p == nil || *p == "" || filepath.IsAbs(*p) {
		return p
	}
	abs := filepath.Join(dir, *p)
	return &abs
}
