package serverconfig_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/serverconfig"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// FuzzRead feeds serverconfig.Read a fuzzed config file. It never panics;
// a failure is a *serverconfig.Error naming the file and, when it has one,
// a line of the file; a file read has a usable ceiling (the rules of
// policies.Ceiling), valid hosts, absolute paths and the values each key
// promises.
func FuzzRead(f *testing.F) {
	if readme, err := os.ReadFile("../README.md"); err == nil {
		_, section, _ := strings.Cut(string(readme), "## Server config file")
		_, block, _ := strings.Cut(section, "```toml\n")
		block, _, _ = strings.Cut(block, "```")
		f.Add([]byte(block))
	}
	for _, s := range []string{
		"",
		"tenant_dir = \"tenants\"\nbind = [\"127.0.0.1:8000\", \"[::1]:8000\"]\ndata_dir = \"/var/lib/wsgi-wasm\"\n" +
			"memory_budget_mb = 1024\nforwarded_allow_ips = []\nadmin_bind = \"\"\ngraceful_timeout = \"10s\"\n" +
			"idle_timeout = \"5s\"\naccess_logfile = \"-\"\n[ceiling]\nrequest_timeout = \"1m\"\nmax_instances = 8\nwritable_data = false\n",
		"certfile = \"c.pem\"\nkeyfile = \"k.pem\"\naccess_logfile = \"log/access.log\"\nsnapshot_dir = \"snap\"\n",
		"[hosts]\nshop = [\"shop.example.test\", \"*.shop.example.test\"]\n\"a.b\" = [\"*\"]\n",
		"[ceiling]\nmemory_mb = 31\nmax_body_bytes = -1\nqueue_length = -1\nrequest_timeout = \"0s\"\n",
		"memory_budget_mb = 0\nidle_timeout = \"-1s\"\nbind = []\n",
		"graceful_timeout = 30\nmemory_budget_mb = \"4G\"\n",
		"\n[ceilings]\nmemory_mb = 64\n",
		"bind = [\"a\"\n",
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "wsgi-wasm.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := serverconfig.Read(path)
		if err != nil {
			var e *serverconfig.Error
			switch lines := bytes.Count(data, []byte("\n")) + 1; {
			case !errors.As(err, &e):
				t.Fatalf("error %v (%T), want a *serverconfig.Error", err, err)
			case e.File != path || !strings.HasPrefix(err.Error(), path):
				t.Fatalf("error %q names %q, want %q", err, e.File, path)
			case e.Line < 0 || e.Line > lines:
				t.Fatalf("error %q is at line %d of %d", err, e.Line, lines)
			case e.Reason == "":
				t.Fatalf("error %q gives no reason", err)
			}
			return
		}
		checkFile(t, path, c)
	})
}

// checkFile checks a config file that Read accepted.
func checkFile(t *testing.T, path string, c *serverconfig.File) {
	t.Helper()
	if c.Path != path {
		t.Fatalf("path %q, want %q", c.Path, path)
	}
	if bad := unusable(c.Ceiling); bad != "" {
		t.Fatalf("ceiling %+v: %s is unusable", c.Ceiling, bad)
	}
	for name, hosts := range c.Hosts {
		for _, h := range hosts {
			if !tenants.ValidHost(h) {
				t.Fatalf("hosts.%s: %q is not valid", name, h)
			}
		}
	}
	switch {
	case c.Bind != nil && len(*c.Bind) == 0:
		t.Fatal("an empty bind")
	case c.MemoryBudgetMB != nil && *c.MemoryBudgetMB <= 0:
		t.Fatalf("memory_budget_mb %d", *c.MemoryBudgetMB)
	case c.TenantDir != nil && *c.TenantDir == "":
		t.Fatal("an empty tenant_dir")
	case (c.CertFile == nil) != (c.KeyFile == nil):
		t.Fatalf("certfile %v without keyfile %v", c.CertFile, c.KeyFile)
	}
	for key, d := range map[string]*time.Duration{"graceful_timeout": c.GracefulTimeout,
		"read_header_timeout": c.ReadHeaderTimeout, "idle_timeout": c.IdleTimeout, "write_timeout": c.WriteTimeout} {
		if d != nil && *d < 0 {
			t.Fatalf("%s %v is negative", key, *d)
		}
	}
	for key, p := range map[string]*string{"tenant_dir": c.TenantDir, "data_dir": c.DataDir, "certfile": c.CertFile,
		"keyfile": c.KeyFile, "python_dir": c.PythonDir, "cache_dir": c.CacheDir, "snapshot_dir": c.SnapshotDir,
		"access_logfile": c.AccessLogFile} {
		if p != nil && *p != "" && !filepath.IsAbs(*p) && (key != "access_logfile" || *p != "-") {
			t.Fatalf("%s %q is not made absolute", key, *p)
		}
	}
}

// unusable names the first limit of a ceiling that breaks the rules of
// policies.Ceiling, or "".
func unusable(c policies.Policy) string {
	switch {
	case c.RequestTimeout <= 0:
		return "request_timeout"
	case c.MemoryMB < 32:
		return "memory_mb"
	case c.MaxBodyBytes < 0:
		return "max_body_bytes"
	case c.MaxInstances < 1:
		return "max_instances"
	case c.QueueLength < 0:
		return "queue_length"
	}
	return ""
}
