package tenants_test

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tomlfile"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// lowCeiling is a ceiling below policies.DefaultCeiling in every limit, and
// below every preset in some, so that fuzzed files meet both answers.
var lowCeiling = policies.Policy{RequestTimeout: 10 * time.Second, MemoryMB: 256, MaxBodyBytes: 1 << 20,
	MaxInstances: 2, QueueLength: 16, WritableData: false}

// FuzzLoad feeds tenants.Load a fuzzed tenant.toml under two ceilings. It
// never panics; a failure is a *tomlfile.Error naming the file and, when
// it has one, a line of the file; a tenant loaded is valid and within the
// ceiling, and one loaded under the lower ceiling loads the same under the
// default one.
func FuzzLoad(f *testing.F) {
	examples, _ := filepath.Glob("../examples/tenants/*/" + tenants.FileName)
	for _, path := range examples {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"app = \"a:b\"\nhosts = [\"*\"]\n",
		"app = \"app:application\"\nhosts = [\"shop.example.test\", \"*.shop.example.test\"]\npath_prefix = \"/shop/\"\n" +
			"warmup = \"/shop/healthz?deep=1\"\n[env]\nGREETING = \"hi\"\n[policy]\npreset = \"strict\"\n" +
			"request_timeout = \"2s\"\n[pool]\nmin_warm = 1\nmax_requests = 500\nmax_requests_jitter = 50\n",
		"app = \"a:b\"\nhosts = [\"*\"]\n[static]\n\"/s\" = \"static\"\n\"/t\" = \"../x\"\n",
		"app = \"a:b\"\nhosts = [\"*\"]\n[policy]\npreset = \"data\"\nmemory_mb = 99999\nwritable_data = true\n",
		"app = \"a:b\"\nhosts = [\"*\"]\n[policy]\nrequest_timeout = 5\nmax_body_bytes = -1\n",
		"app = \"a:b\"\nhosts = [\"*\"]\npool.min_warm = 3\n\"env\".X = \"1\"\n",
		"app = \"a:b\nhosts = [",
		"[[policy]]\n[policy]\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "static"), 0o755); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, tenants.FileName)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		low, lowErr := tenants.Load(dir, lowCeiling)
		checkLoad(t, data, path, low, lowErr, lowCeiling)
		def, defErr := tenants.Load(dir, policies.DefaultCeiling)
		checkLoad(t, data, path, def, defErr, policies.DefaultCeiling)
		if lowErr == nil && !reflect.DeepEqual(low, def) {
			t.Errorf("under the lower ceiling %+v, under the default one %+v (error %v)", low, def, defErr)
		}
	})
}

// checkLoad checks one answer of tenants.Load for the file at path, which
// holds data.
func checkLoad(t *testing.T, data []byte, path string, tn *tenants.Tenant, err error, ceiling policies.Policy) {
	t.Helper()
	if err != nil {
		var te *tomlfile.Error
		switch lines := bytes.Count(data, []byte("\n")) + 1; {
		case !errors.As(err, &te):
			t.Fatalf("error %v (%T), want a *tomlfile.Error", err, err)
		case te.File != path || !strings.HasPrefix(err.Error(), path):
			t.Fatalf("error %q names %q, want %q", err, te.File, path)
		case te.Line < 0 || te.Line > lines:
			t.Fatalf("error %q is at line %d of %d", err, te.Line, lines)
		case te.Reason == "":
			t.Fatalf("error %q gives no reason", err)
		}
		return
	}
	if tn == nil {
		t.Fatal("no tenant and no error")
	}
	if bad := outside(tn.Policy, ceiling); bad != "" {
		t.Fatalf("policy %+v is outside the ceiling %+v: %s", tn.Policy, ceiling, bad)
	}
	if m, c, ok := strings.Cut(tn.App, ":"); !ok || m == "" || c == "" {
		t.Fatalf("app %q is not module:callable", tn.App)
	}
	if len(tn.Hosts) == 0 {
		t.Fatal("no hosts")
	}
	for _, h := range tn.Hosts {
		if !tenants.ValidHost(h) {
			t.Fatalf("host %q is not valid", h)
		}
	}
	if p := tn.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "..")) {
		t.Fatalf("path_prefix %q", p)
	}
	if tn.Warmup != "" {
		u, err := url.ParseRequestURI(tn.Warmup)
		if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/") || !tenants.PathUnder(u.Path, tn.PathPrefix) ||
			strings.Contains(u.Path, "..") {
			t.Fatalf("warmup %q (prefix %q): %v", tn.Warmup, tn.PathPrefix, err)
		}
	}
	for k := range tn.Env {
		if !envName(k) {
			t.Fatalf("env key %q", k)
		}
	}
	if p := tn.Pool; p.MinWarm < 0 || p.MaxRequests < 0 || p.MaxRequestsJitter < 0 || p.MinWarm > tn.Policy.MaxInstances {
		t.Fatalf("pool %+v with max_instances %d", p, tn.Policy.MaxInstances)
	}
	for prefix, folder := range tn.Static {
		if !strings.HasPrefix(prefix, "/") || !filepath.IsLocal(filepath.Clean(folder)) {
			t.Fatalf("static %q = %q", prefix, folder)
		}
	}
	for _, folder := range tn.PythonPath {
		if !filepath.IsLocal(folder) {
			t.Fatalf("python_path %q", folder)
		}
	}
	if tn.Dir != filepath.Dir(path) || tn.Name != filepath.Base(tn.Dir) {
		t.Fatalf("tenant %q in %q, want %q", tn.Name, tn.Dir, filepath.Dir(path))
	}
}

// outside names the first limit of p that a tenant cannot have under
// ceiling c (policies.Policy's field comments), or "".
func outside(p, c policies.Policy) string {
	switch {
	case p.RequestTimeout <= 0 || p.RequestTimeout > c.RequestTimeout:
		return "request_timeout"
	case p.MemoryMB < 32 || p.MemoryMB > c.MemoryMB:
		return "memory_mb"
	case p.MaxBodyBytes < 0 || p.MaxBodyBytes > c.MaxBodyBytes:
		return "max_body_bytes"
	case p.MaxInstances < 1 || p.MaxInstances > c.MaxInstances:
		return "max_instances"
	case p.QueueLength < 0 || p.QueueLength > c.QueueLength:
		return "queue_length"
	case p.WritableData && !c.WritableData:
		return "writable_data"
	}
	return ""
}

// envName reports whether k is an environment variable name: letters,
// digits and underscores, not starting with a digit.
func envName(k string) bool {
	for i, r := range k {
		letter := r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return k != ""
}
