package server_test

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testservices"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// runner is a tenant app that runs one of testservices' outbound scripts
// (named by the path) inside the request and answers what it printed.
const runner = `import contextlib, io, runpy, traceback

def app(environ, start_response):
    out = io.StringIO()
    status = "200 OK"
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path("/app/scripts" + environ["PATH_INFO"], run_name="__main__")
    except BaseException:
        out.write(traceback.format_exc())
        status = "500 Internal Server Error"
    start_response(status, [("Content-Type", "text/plain")])
    return [out.getvalue().encode()]
`

// TestOutboundLibraries runs the client libraries' round trips inside the
// sandbox, each tenant allowed only its server: pg8000 on PostgreSQL
// (plain and TLS verified against the test CA), PyMySQL and Django on
// MariaDB, redis-py on Redis, SQLAlchemy 1.4 on PyMySQL, requests over
// HTTPS (its "default store" is another CA's bundle given by
// REQUESTS_CA_BUNDLE), and requests with its default verification
// (Debian's certifi bundle path), which trusts the server's
// OutboundRootCAs, here the test CA. The same scripts run natively in
// internal/testservices.
func TestOutboundLibraries(t *testing.T) {
	site := testservices.SitePackages(t)
	pg, pgTLS, db, rd := testservices.Postgres(t), testservices.PostgresTLS(t), testservices.MariaDB(t), testservices.Redis(t)
	httpsURL, caPEM := testservices.HTTPS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path})
	}))
	httpsAddr := strings.TrimPrefix(httpsURL, "https://")
	mysqlURL := fmt.Sprintf("mysql+pymysql://%s:%s@%s/%s", db.User, db.Password, db.Addr(), db.Database)
	cases := []struct {
		script, dest string
		env          []string
		check        func(map[string]any) bool
	}{
		{"pg8000_roundtrip.py", pg.Addr(), pg.Env(), func(r map[string]any) bool { return r["inserted"] == r["selected"] && r["inserted"] != nil }},
		{"pg8000_roundtrip.py", pgTLS.Addr(), append(pgTLS.Env(), "PGSSLMODE=require", "PGSSLROOTCERT=/app/ca.pem"), func(r map[string]any) bool { return r["inserted"] == r["selected"] && r["ssl"] == true }},
		{"pymysql_roundtrip.py", db.Addr(), db.Env(), func(r map[string]any) bool {
			return r["inserted"] != nil && fmt.Sprint(r["inserted"]) == fmt.Sprint(r["selected"])
		}},
		{"redis_roundtrip.py", rd.Addr(), rd.Env(), func(r map[string]any) bool { return r["set"] == r["got"] && r["got"] != nil }},
		{"sqlalchemy_roundtrip.py", db.Addr(), []string{"SQLALCHEMY_URL=" + mysqlURL}, func(r map[string]any) bool { return len(r) > 0 }},
		{"django_mysql.py", db.Addr(), db.Env(), func(r map[string]any) bool { return len(r) > 0 }},
		{"requests_https.py", httpsAddr, []string{"HTTPS_URL=" + httpsURL, "CA_FILE=/app/ca.pem", "REQUESTS_CA_BUNDLE=/app/other-ca.pem"}, func(r map[string]any) bool {
			return r["get"] != nil && r["post"] != nil && r["default_store_refused"] == true
		}},
		{"requests_default_verify.py", httpsAddr, []string{"HTTPS_URL=" + httpsURL}, func(r map[string]any) bool {
			return r["status"] == 200.0 && r["body"] != nil && r["certifi_where"] == "/etc/ssl/certs/ca-certificates.crt"
		}},
	}
	root := t.TempDir()
	for i, c := range cases {
		dir := filepath.Join(root, fmt.Sprintf("t%d", i))
		if err := os.CopyFS(filepath.Join(dir, "site-packages"), os.DirFS(site)); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(filepath.Join(dir, "scripts"), os.DirFS(filepath.Join(testservices.Outbound()))); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(dir, "scripts", "site-packages"))
		ca := caPEM
		if strings.Contains(strings.Join(c.env, " "), "PGSSLMODE") {
			ca = pgTLS.CAPEM
		}
		toml := fmt.Sprintf("app = \"runner:app\"\nhosts = [\"t%d.test\"]\n[policy]\nrequest_timeout = \"2m\"\noutbound = [%q]\n[env]\n", i, c.dest)
		for _, kv := range c.env {
			k, v, _ := strings.Cut(kv, "=")
			toml += fmt.Sprintf("%s = %q\n", k, v)
		}
		for name, body := range map[string]string{"runner.py": runner, "tenant.toml": toml, "ca.pem": string(ca), "other-ca.pem": string(pgTLS.CAPEM)} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	logs := &testlog.Buffer{}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("the test CA's PEM holds no certificate")
	}
	_, hs := serveTree(t, testEngine(t), root, server.Config{Logger: slog.New(slog.NewTextHandler(logs, nil)), OutboundRootCAs: roots})
	for i, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.script, c.dest), func(t *testing.T) {
			code, body := get(t, hs.URL, fmt.Sprintf("t%d.test", i), "/"+c.script)
			lines := strings.Split(strings.TrimSpace(body), "\n")
			var r map[string]any
			if code != 200 || json.Unmarshal([]byte(lines[len(lines)-1]), &r) != nil || !c.check(r) {
				t.Fatalf("in the sandbox: %d\n%s\nlog:\n%s", code, body, logs)
			}
			t.Logf("%s", lines[len(lines)-1])
		})
	}
}
