package tenants_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

func write(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tenants.FileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadValid(t *testing.T) {
	dir := write(t, `
app = "app:application"
hosts = ["shop.example.test", "*.shop.example.test"]
path_prefix = "/shop/"
warmup = "/shop/healthz?deep=1"
python_path = ["./src/", "."]
[env]
GREETING = "hi"
[policy]
preset = "strict"
request_timeout = "2s"
[pool]
min_warm = 1
max_requests = 500
max_requests_jitter = 50
`)
	if err := os.Mkdir(filepath.Join(dir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	tn, err := tenants.Load(dir, policies.DefaultCeiling)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tn.PythonPath, " ") != "src ." {
		t.Errorf("python_path %q", tn.PythonPath)
	}
	if tn.App != "app:application" || tn.PathPrefix != "/shop" || tn.Env["GREETING"] != "hi" ||
		tn.Policy.RequestTimeout != 2*time.Second || tn.Policy.MemoryMB != policies.Presets["strict"].MemoryMB ||
		tn.Pool.MaxRequests != 500 || len(tn.Hosts) != 2 || tn.Warmup != "/shop/healthz?deep=1" {
		t.Fatalf("loaded %+v", tn)
	}
}

// TestLoadErrors: each broken tenant.toml names the file, the key and why.
func TestLoadErrors(t *testing.T) {
	for name, tc := range map[string]struct{ body, key, reason string }{
		"syntax":            {"app = \"a:b\nhosts = [", "", "tenant.toml:"},
		"unknown key":       {`app = "a:b"` + "\nhosts=[\"*\"]\nworkers = 3\n", "workers", "unknown key"},
		"unknown nested":    {`app = "a:b"` + "\nhosts=[\"*\"]\n[pool]\nmax = 3\n", "pool.max", "unknown key"},
		"missing app":       {`hosts = ["*"]`, "app", "missing"},
		"bad app":           {`app = "app.py"` + "\nhosts=[\"*\"]", "app", "module:callable"},
		"missing hosts":     {`app = "a:b"`, "hosts", "missing"},
		"bad host":          {`app = "a:b"` + "\nhosts=[\"exa mple\"]", "hosts", "not a host name"},
		"bad prefix":        {`app = "a:b"` + "\nhosts=[\"*\"]\npath_prefix = \"x\"", "path_prefix", "must start with /"},
		"warmup not a path": {`app = "a:b"` + "\nhosts=[\"*\"]\nwarmup = \"healthz\"", "warmup", "not a path"},
		"warmup with host":  {`app = "a:b"` + "\nhosts=[\"*\"]\nwarmup = \"//evil.test/x\"", "warmup", "not a path"},
		"warmup climbs":     {`app = "a:b"` + "\nhosts=[\"*\"]\nwarmup = \"/a/../b\"", "warmup", "must not contain .."},
		"warmup off prefix": {`app = "a:b"` + "\nhosts=[\"*\"]\npath_prefix = \"/shop\"\nwarmup = \"/shopping\"", "warmup", "path_prefix"},
		"bad env":           {`app = "a:b"` + "\nhosts=[\"*\"]\n[env]\n\"1X\" = \"v\"", "env.1X", "environment variable"},
		"unknown preset":    {`app = "a:b"` + "\nhosts=[\"*\"]\n[policy]\npreset = \"lax\"", "policy.preset", "unknown preset"},
		"over ceiling":      {`app = "a:b"` + "\nhosts=[\"*\"]\n[policy]\nmemory_mb = 99999", "policy.memory_mb", "outside what the server allows"},
		"bad duration":      {`app = "a:b"` + "\nhosts=[\"*\"]\n[policy]\nrequest_timeout = \"soon\"", "", "duration"},
		"static outside":    {`app = "a:b"` + "\nhosts=[\"*\"]\n[static]\n\"/s\" = \"../x\"", "static./s", "inside the tenant folder"},
		"python_path out":   {`app = "a:b"` + "\nhosts=[\"*\"]\npython_path = [\".\", \"../x\"]", "python_path[1]", `"../x": want a folder inside `},
		"python_path none":  {`app = "a:b"` + "\nhosts=[\"*\"]\npython_path = [\"src\"]", "python_path[0]", "src is not a folder"},
		"bad outbound rule": {`app = "a:b"` + "\nhosts=[\"*\"]\n[policy]\noutbound = [\"db:5432\", \"db.internal\"]", "policy.outbound[1]", "not host:port"},
		"outbound wildcard": {`app = "a:b"` + "\nhosts=[\"*\"]\n[policy]\noutbound = [\"*.com:443\"]", "policy.outbound[0]", "two labels"},
		"min warm too big":  {`app = "a:b"` + "\nhosts=[\"*\"]\n[policy]\npreset = \"strict\"\n[pool]\nmin_warm = 3", "pool.min_warm", "max_instances"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := write(t, tc.body)
			_, err := tenants.Load(dir, policies.DefaultCeiling)
			var te *tenants.Error
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *tenants.Error", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, filepath.Join(dir, tenants.FileName)) || !strings.Contains(msg, tc.reason) ||
				(tc.key != "" && te.Key != tc.key) {
				t.Fatalf("error %q (key %q); want file, key %q and %q", msg, te.Key, tc.key, tc.reason)
			}
		})
	}
}

// TestFolderInsideRefusesLinks: a link at any level of the folder named,
// not only the last, is refused, as one could lead out of the tenant's
// folder.
func TestFolderInsideRefusesLinks(t *testing.T) {
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(outside, "b"), 0o755)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "real", "b"), 0o755)
	os.Symlink(outside, filepath.Join(dir, "a"))
	os.Symlink(filepath.Join(dir, "real", "b"), filepath.Join(dir, "real", "link"))
	for folder, want := range map[string]string{
		"real/b":    "",
		"./real/b/": "",
		".":         "",
		"a/b":       filepath.Join(dir, "a") + " is not a folder",
		"a":         filepath.Join(dir, "a") + " is not a folder",
		"real/link": filepath.Join(dir, "real", "link") + " is not a folder",
	} {
		_, err := tenants.FolderInside(dir, folder)
		if got := fmt.Sprint(err); want == "" && err != nil || want != "" && !strings.Contains(got, want) {
			t.Errorf("FolderInside(%q) = %v, want %q", folder, err, want)
		}
	}
}

func TestWritableDataNeedsCeiling(t *testing.T) {
	dir := write(t, `app = "a:b"`+"\nhosts=[\"*\"]\n[policy]\nwritable_data = true")
	ceiling := policies.DefaultCeiling
	ceiling.WritableData = false
	if _, err := tenants.Load(dir, ceiling); err == nil || !strings.Contains(err.Error(), "policy.writable_data") {
		t.Fatalf("err = %v", err)
	}
	if tn, err := tenants.Load(dir, policies.DefaultCeiling); err != nil || !tn.Policy.WritableData {
		t.Fatalf("tenant %+v, err %v", tn, err)
	}
}
