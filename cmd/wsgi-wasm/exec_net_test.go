package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testservices"
)

// outboundTenants makes a tenant tree whose tenants hold the client
// libraries and the outbound scripts of testservices: "open" may connect
// to each of dests, "closed" to none.
func outboundTenants(t *testing.T, dests ...string) string {
	t.Helper()
	site := testservices.SitePackages(t)
	tree := t.TempDir()
	for name, rules := range map[string][]string{"open": dests, "closed": {}} {
		dir := filepath.Join(tree, name)
		// Only what the two scripts import: exec compiles all of it.
		for _, pkg := range []string{"pg8000", "six.py", "requests", "urllib3", "certifi", "idna", "charset_normalizer", "chardet"} {
			from, to := filepath.Join(site, pkg), filepath.Join(dir, "site-packages", pkg)
			if filepath.Ext(pkg) == ".py" {
				b, err := os.ReadFile(from)
				if err == nil {
					err = os.MkdirAll(filepath.Dir(to), 0o755)
				}
				if err == nil {
					err = os.WriteFile(to, b, 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			} else if err := os.CopyFS(to, os.DirFS(from)); err != nil {
				t.Fatal(err)
			}
		}
		for _, script := range []string{"pg8000_roundtrip.py", "requests_default_verify.py"} {
			b, err := os.ReadFile(filepath.Join(testservices.Outbound(), script))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, script), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		list, _ := json.Marshal(rules)
		toml := fmt.Sprintf("app = \"app:application\"\nhosts = [%q]\n[policy]\noutbound = %s\n", name+".test", list)
		app := "def application(environ, start_response):\n    start_response(\"200 OK\", [])\n    return [b\"\"]\n"
		for file, text := range map[string]string{"tenant.toml": toml, "app.py": app} {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tree
}

// lastJSON is the JSON object on the last line of out.
func lastJSON(t *testing.T, out, errOut string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("no JSON on the last line of %q: %v\nstderr:\n%s", out, err, errOut)
	}
	return r
}

// TestExecOutbound: exec applies the tenant's [policy] outbound as serve
// does. A tenant allowed the test PostgreSQL does a pg8000 round trip; one
// without the rule is refused, with the destination and the rule to add
// on stderr and a non-zero exit. requests' default verification (Debian's
// certifi bundle path) uses the server's CA file, from --outbound-ca-file
// or the --config file's outbound_ca_file, and refuses the test server's
// certificate without one.
func TestExecOutbound(t *testing.T) {
	pg := testservices.Postgres(t)
	httpsURL, caPEM := testservices.HTTPS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "verified %s", r.URL.Path)
	}))
	httpsAddr := strings.TrimPrefix(httpsURL, "https://")
	tree := outboundTenants(t, pg.Addr(), httpsAddr)
	var pgEnv []string
	for _, kv := range pg.Env() {
		pgEnv = append(pgEnv, "--env", kv)
	}
	base := []string{"--tenant-dir", tree}

	t.Run("allowed", func(t *testing.T) {
		code, out, errOut := runExec(t, "", append(append(base, pgEnv...), "--tenant", "open", "--", "pg8000_roundtrip.py")...)
		if code != 0 {
			t.Fatalf("exit %d, out %q, stderr:\n%s", code, out, errOut)
		}
		if r := lastJSON(t, out, errOut); r["inserted"] == nil || r["inserted"] != r["selected"] {
			t.Fatalf("round trip: %v", r)
		}
	})
	t.Run("no rule", func(t *testing.T) {
		code, out, errOut := runExec(t, "", append(append(base, pgEnv...), "--tenant", "closed", "--", "pg8000_roundtrip.py")...)
		hint := fmt.Sprintf("add %q to [policy] outbound", pg.Addr())
		if code == 0 || !strings.Contains(errOut, "PermissionError") || !strings.Contains(errOut, "connection to "+pg.Addr()) ||
			!strings.Contains(errOut, hint) || !strings.Contains(errOut, "outbound connection refused") {
			t.Fatalf("exit %d, out %q, want a refusal naming %s (%s) on stderr:\n%s", code, out, pg.Addr(), hint, errOut)
		}
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		t.Logf("stderr ends with:\n%s", strings.Join(lines[max(0, len(lines)-2):], "\n"))
	})

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "wsgi-wasm.toml")
	if err := os.WriteFile(config, fmt.Appendf(nil, "tenant_dir = %q\noutbound_ca_file = %q\n", tree, ca), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"--env", "HTTPS_URL=" + httpsURL}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"--outbound-ca-file", append(append([]string{}, base...), "--outbound-ca-file", ca)},
		{"outbound_ca_file", []string{"--config", config}},
	} {
		t.Run("default verify with "+c.name, func(t *testing.T) {
			code, out, errOut := runExec(t, "", append(append(c.args, env...), "--tenant", "open", "--", "requests_default_verify.py")...)
			r := lastJSON(t, out, errOut)
			if code != 0 || r["status"] != 200.0 || r["body"] != "verified /default-verify" || r["certifi_where"] != "/etc/ssl/certs/ca-certificates.crt" {
				t.Fatalf("exit %d, %v; stderr:\n%s", code, r, errOut)
			}
		})
	}
	t.Run("default verify with the host's store", func(t *testing.T) {
		code, out, errOut := runExec(t, "", append(append(base, env...), "--tenant", "open", "--", "requests_default_verify.py")...)
		r := lastJSON(t, out, errOut)
		if code != 0 || !strings.Contains(fmt.Sprint(r["ssl_error"]), "CERTIFICATE_VERIFY_FAILED") {
			t.Fatalf("exit %d, %v, want the test CA's certificate refused; stderr:\n%s", code, r, errOut)
		}
	})
}
