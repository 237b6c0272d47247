package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
)

// settingsFor runs the real command line with args after "wsgi-wasm serve"
// and returns the settings serve would run with, without serving.
func settingsFor(t *testing.T, args ...string) (serveSettings, error) {
	t.Helper()
	code := 0
	app := newApp(slog.New(slog.DiscardHandler), new(slog.LevelVar), &code)
	var got serveSettings
	for _, cmd := range app.Commands {
		if cmd.Name == "serve" {
			cmd.Action = func(c *cli.Context) error {
				var err error
				got, err = serveSettingsOf(c)
				return err
			}
		}
	}
	err := app.Run(append([]string{"wsgi-wasm", "serve"}, args...))
	return got, err
}

const configFile = `
tenant_dir = "tenants"
bind = ["127.0.0.1:8100", "127.0.0.1:8101"]
admin_bind = "127.0.0.1:9100"
memory_budget_mb = 512
graceful_timeout = "7s"
idle_timeout = "3s"
python_dir = "/opt/python-wasi"
forwarded_allow_ips = []
snapshots = false
snapshot_base = true
max_connections_per_ip = 64
[ceiling]
max_instances = 2
`

// TestServeSettingsPrecedence: a flag, or its environment variable, beats
// the config file, which beats the flag's default.
func TestServeSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "wsgi-wasm.toml")
	os.WriteFile(cfg, []byte(configFile), 0o644)
	ceiling := policies.DefaultCeiling
	ceiling.MaxInstances = 2

	// The file alone: its values, defaults for what it lacks.
	s, err := settingsFor(t, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := serveSettings{
		configFile: cfg, tenantDir: filepath.Join(dir, "tenants"), binds: []string{"127.0.0.1:8100", "127.0.0.1:8101"},
		adminBind: "127.0.0.1:9100", memoryBudgetMB: 512, gracefulTimeout: 7 * time.Second, pythonDir: "/opt/python-wasi",
		forwardedAllowIPs: []string{}, accessLog: "-", ceiling: ceiling, maxConns: 10000, maxConnsPerIP: 64,
		snapshots: false, snapshotBase: true, snapshotDir: os.Getenv("WSGI_WASM_SNAPSHOT_DIR"), // TestMain's folder
		timeouts:       httpTimeouts{readHeader: 10 * time.Second, idle: 3 * time.Second},
		tenantLogMaxMB: 10, pycRetention: 24 * time.Hour,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("file only:\n got %+v\nwant %+v", s, want)
	}

	// Flags and environment variables override the file, global flags too.
	t.Setenv("WSGI_WASM_ADMIN_BIND", "")
	t.Setenv("WSGI_WASM_IDLE_TIMEOUT", "9s")
	s, err = settingsFor(t, "--config", cfg, "--bind", "127.0.0.1:8200", "--tenant-dir", "/srv/t", "--graceful-timeout", "1s", "--max-connections-per-ip", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.binds, []string{"127.0.0.1:8200"}) || s.tenantDir != "/srv/t" || s.gracefulTimeout != time.Second ||
		s.adminBind != "" || s.timeouts.idle != 9*time.Second || s.memoryBudgetMB != 512 || s.maxConnsPerIP != 0 {
		t.Fatalf("flags and environment over the file: %+v", s)
	}
	t.Setenv("WSGI_WASM_PYTHON_DIR", "/env/python")
	if s, err = settingsFor(t, "--config", cfg); err != nil || s.pythonDir != "/env/python" {
		t.Fatalf("global flag's environment variable over the file: %q %v", s.pythonDir, err)
	}

	// No file: the defaults.
	s, err = settingsFor(t, "--tenant-dir", "t")
	if err != nil || s.memoryBudgetMB != 4096 || !reflect.DeepEqual(s.ceiling, policies.DefaultCeiling) || !reflect.DeepEqual(s.forwardedAllowIPs, []string{"127.0.0.1", "::1"}) || !s.snapshots || s.snapshotBase {
		t.Fatalf("defaults: %+v %v", s, err)
	}
}

func TestServeSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("tenant_dir = \"t\"\nworkers = 4\n"), 0o644)
	noDir := filepath.Join(dir, "nodir.toml")
	os.WriteFile(noDir, []byte("bind = [\"127.0.0.1:1\"]\n"), 0o644)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown key":         {[]string{"--config", bad}, bad + ":2: workers: unknown key"},
		"missing file":        {[]string{"--config", filepath.Join(dir, "none.toml")}, "no such file"},
		"no tenant dir":       {[]string{"--config", noDir}, "no tenant folder"},
		"bad budget":          {[]string{"--tenant-dir", "t", "--memory-budget-mb", "0"}, "memory-budget-mb"},
		"short pyc retention": {[]string{"--tenant-dir", "t", "--pyc-retention", "30m"}, "--pyc-retention must be 0"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := settingsFor(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q in it", err, tc.want)
			}
		})
	}
}
