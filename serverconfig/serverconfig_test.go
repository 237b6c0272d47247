package serverconfig_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/serverconfig"
)

func write(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wsgi-wasm.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRead(t *testing.T) {
	path := write(t, `
tenant_dir = "tenants"             # relative to this file
bind = ["127.0.0.1:8000", "[::1]:8000"]
data_dir = "/var/lib/wsgi-wasm"
memory_budget_mb = 1024
forwarded_allow_ips = []
admin_bind = ""
graceful_timeout = "10s"
idle_timeout = "5s"
access_logfile = "-"
max_connections_per_ip = 16
[ceiling]
request_timeout = "1m"
max_instances = 8
writable_data = false
`)
	f, err := serverconfig.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	want := policies.DefaultCeiling
	want.RequestTimeout, want.MaxInstances, want.WritableData = time.Minute, 8, false
	switch {
	case *f.TenantDir != filepath.Join(dir, "tenants"), *f.DataDir != "/var/lib/wsgi-wasm":
		t.Errorf("folders: %q %q", *f.TenantDir, *f.DataDir)
	case len(*f.Bind) != 2 || (*f.Bind)[1] != "[::1]:8000", *f.MemoryBudgetMB != 1024:
		t.Errorf("bind %v, budget %d", *f.Bind, *f.MemoryBudgetMB)
	case f.ForwardedAllowIPs == nil || len(*f.ForwardedAllowIPs) != 0:
		t.Errorf("an empty forwarded_allow_ips must be kept (trust no proxy): %v", f.ForwardedAllowIPs)
	case f.AdminBind == nil || *f.AdminBind != "" || *f.AccessLogFile != "-":
		t.Errorf("admin_bind %v, access_logfile %v", f.AdminBind, f.AccessLogFile)
	case *f.GracefulTimeout != 10*time.Second || *f.IdleTimeout != 5*time.Second || f.ReadHeaderTimeout != nil:
		t.Errorf("timeouts %v %v %v", *f.GracefulTimeout, *f.IdleTimeout, f.ReadHeaderTimeout)
	case !cmp.Equal(f.Ceiling, want, cmpopts.EquateComparable(netip.Addr{})):
		t.Errorf("ceiling %+v, want %+v", f.Ceiling, want)
	case f.MaxConnectionsPerIP == nil || *f.MaxConnectionsPerIP != 16 || f.MaxConnections != nil:
		t.Errorf("max_connections %v, max_connections_per_ip %v", f.MaxConnections, f.MaxConnectionsPerIP)
	case f.CertFile != nil || f.PythonDir != nil:
		t.Errorf("keys not in the file must stay nil: %v %v", f.CertFile, f.PythonDir)
	}
}

// TestReadErrors: each mistake is an error naming the file, the line and
// the key.
func TestReadErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		body, key, reason string
		line              int
	}{
		"unknown key":      {"bind = [\"127.0.0.1:1\"]\nworkers = 3\n", "workers", "unknown key", 2},
		"unknown ceiling":  {"[ceiling]\nmemory_mb = 64\ncpu = 1\n", "ceiling.cpu", "unknown key", 3},
		"misspelled table": {"\n[ceilings]\nmemory_mb = 64\n", "ceilings", "unknown key", 2},
		"wrong type":       {"memory_budget_mb = \"4G\"\n", "memory_budget_mb", "incompatible types", 1},
		"duration number":  {"graceful_timeout = 30\n", "graceful_timeout", "want a duration", 1},
		"empty bind":       {"tenant_dir = \"t\"\nbind = []\n", "bind", "empty", 2},
		"zero budget":      {"memory_budget_mb = 0\n", "memory_budget_mb", "more than 0", 1},
		"cert without key": {"certfile = \"c.pem\"\n", "certfile", "go together", 1},
		"negative timeout": {"idle_timeout = \"-1s\"\n", "idle_timeout", "negative", 1},
		"negative cap":     {"max_connections = -1\n", "max_connections", "negative", 1},
		"bad ceiling":      {"[ceiling]\nmax_instances = 0\n", "ceiling.max_instances", "at least 1", 2},
		"syntax":           {"bind = [\"a\"\n", "", "expected", 1},
	} {
		t.Run(name, func(t *testing.T) {
			path := write(t, tc.body)
			_, err := serverconfig.Read(path)
			var e *serverconfig.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *serverconfig.Error", err)
			}
			if e.File != path || e.Line != tc.line || (tc.key != "" && e.Key != tc.key) || !strings.Contains(e.Reason, tc.reason) {
				t.Fatalf("got %q; want %s:%d, key %q, reason with %q", err, path, tc.line, tc.key, tc.reason)
			}
		})
	}
	if _, err := serverconfig.Read(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestReadmeExample: the config file the README shows is valid and holds
// the default ceiling it claims.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Server config file")
	_, block, _ := strings.Cut(section, "```toml\n")
	block, _, _ = strings.Cut(block, "```")
	f, err := serverconfig.Read(write(t, block))
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if !cmp.Equal(f.Ceiling, policies.DefaultCeiling) || f.TenantDir == nil || len(*f.Bind) != 2 ||
		f.Snapshots == nil || !*f.Snapshots || f.SnapshotBase == nil || *f.SnapshotBase || f.SnapshotDir == nil ||
		f.MaxConnections == nil || *f.MaxConnections != 10000 || f.MaxConnectionsPerIP == nil || *f.MaxConnectionsPerIP != 256 {
		t.Fatalf("README example read as %+v (ceiling %+v, want the default %+v)", f, f.Ceiling, policies.DefaultCeiling)
	}
}
