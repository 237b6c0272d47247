package server_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

const echoApp = `
def application(environ, start_response):
    body = ("%s|%s|%s" % (TAG, environ["SCRIPT_NAME"], environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`

// testEngine starts an engine for one test.
func testEngine(t *testing.T) *sandbox.Engine {
	t.Helper()
	in := testinterp.Require(t)
	eng, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: in})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	return eng
}

// tenantDir makes a tenant folder tree: name -> tenant.toml body.
func tenantDir(t *testing.T, tenants map[string]string) string {
	root := t.TempDir()
	for name, toml := range tenants {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "assets", "css"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "assets", "css", "site.css"), []byte("body{}"), 0o644)
		os.WriteFile(filepath.Join(root, "secret.txt"), []byte("outside"), 0o644)
		app := "TAG = " + `"` + name + `"` + "\n" + echoApp
		if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(app), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestRoutingAndBrokenTenants(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{
		"shop":    "app = \"app:application\"\nhosts = [\"shop.test\"]\n",
		"blog":    "app = \"app:application\"\nhosts = [\"shop.test\"]\npath_prefix = \"/blog\"\n",
		"wild":    "app = \"app:application\"\nhosts = [\"*.wild.test\"]\n[policy]\nmax_body_bytes = 10\n",
		"files":   "app = \"app:application\"\nhosts = [\"files.test\"]\n[static]\n\"/static\" = \"assets\"\n",
		"broken":  "app = \"app:application\"\nhosts = [\"broken.test\"]\nworkers = 2\n",
		"noimprt": "app = \"missing_module:app\"\nhosts = [\"noimport.test\"]\n",
	})
	// shop and blog share shop.test, split by path prefix: the operator
	// assigns it to both.
	assigned := map[string][]string{
		"shop": {"shop.test"}, "blog": {"shop.test"}, "wild": {"*.wild.test"}, "files": {"files.test"},
		"broken": {"broken.test"}, "noimprt": {"noimport.test"},
	}
	srv, err := server.New(context.Background(), eng, server.Config{TenantDir: root, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 30, HostAssignments: assigned})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	staticCheck(t, hs.URL)
	defer hs.Close()
	do := func(host, method, path, body string) (int, string) {
		return send(t, method, hs.URL, host, path, strings.NewReader(body))
	}
	for _, c := range []struct {
		host, method, path, body string
		code                     int
		want                     string
	}{
		{"shop.test", "GET", "/cart", "", 200, "shop||/cart"},
		{"shop.test", "GET", "/blog/post/1", "", 200, "blog|/blog|/post/1"},
		{"shop.test", "GET", "/blogger", "", 200, "shop||/blogger"},
		{"a.wild.test", "GET", "/x", "", 200, "wild||/x"},
		{"a.wild.test", "POST", "/x", "more than ten bytes", 413, ""},
		{"unknown.test", "GET", "/", "", 404, ""},
		{"broken.test", "GET", "/", "", 503, ""},
		{"noimport.test", "GET", "/", "", 503, ""},
	} {
		code, body := do(c.host, c.method, c.path, c.body)
		if code != c.code || (c.want != "" && body != c.want) {
			t.Errorf("%s %s%s: %d %q, want %d %q", c.method, c.host, c.path, code, body, c.code, c.want)
		}
	}

	// gunicorn's request limits, with the statuses README documents.
	req, _ := http.NewRequest("GET", hs.URL+"/"+strings.Repeat("a", server.MaxRequestLine), nil)
	req.Host = "shop.test"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 414 {
		t.Errorf("long request line: %v %v", resp.StatusCode, err)
	}
	req, _ = http.NewRequest("GET", hs.URL+"/", nil)
	req.Host = "shop.test"
	for i := 0; i <= server.MaxHeaderFields; i++ {
		req.Header.Add("X-F"+strings.Repeat("x", i%7), "v")
	}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 431 {
		t.Errorf("too many header fields: %v %v", resp.StatusCode, err)
	}
	req, _ = http.NewRequest("GET", hs.URL+"/", nil)
	req.Host = "shop.test"
	req.Header.Set("X-Big", strings.Repeat("v", server.MaxFieldSize))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 431 {
		t.Errorf("oversized header field: %v %v", resp.StatusCode, err)
	}

	admin := httptest.NewServer(srv.AdminHandler())
	defer admin.Close()
	for path, want := range map[string]string{
		"/livez":   "ok",
		"/readyz":  "ok",
		"/metrics": `wsgi_wasm_requests_total{code="2xx",tenant="shop"} 2`,
	} {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, want %q in:\n%.2000s", path, resp.StatusCode, want, b)
		}
	}
}

// TestReload: a changed tenant serves its new version after Reload; a broken
// new version leaves the old one serving; requests keep working throughout.
func TestReload(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{"shop": "app = \"app:application\"\nhosts = [\"shop.test\"]\n"})
	srv, err := server.New(context.Background(), eng, server.Config{TenantDir: root, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func() string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/x", nil)
		req.Host = "shop.test"
		srv.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	if got := get(); got != "shop||/x" {
		t.Fatalf("before: %q", got)
	}
	app := filepath.Join(root, "shop", "app.py")
	if err := os.WriteFile(app, []byte("TAG = \"shop-v2\"\n"+echoApp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "shop-v2||/x" {
		t.Fatalf("after reload: %q", got)
	}
	toml := filepath.Join(root, "shop", "tenant.toml")
	if err := os.WriteFile(toml, []byte("app = \"app:application\"\nhosts = [\"shop.test\"]\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "shop-v2||/x" {
		t.Fatalf("a broken new version must leave the old one serving: %q", got)
	}
	// An app that fails at import is broken too: the old version serves on.
	os.WriteFile(toml, []byte("app = \"app:application\"\nhosts = [\"shop.test\"]\n"), 0o644)
	if err := os.WriteFile(app, []byte("raise RuntimeError('boom at import')\n"+echoApp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "shop-v2||/x" {
		t.Fatalf("a new version that fails at import must leave the old one serving: %q", got)
	}
}

// staticCheck: files.test serves /static from its assets folder without the
// interpreter, with content type and validators, and nothing outside it.
func staticCheck(t *testing.T, base string) {
	t.Helper()
	get := func(path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Host = "files.test"
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := get("/static/css/site.css", nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || etag == "" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("static file: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := get("/static/css/site.css", map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 {
		t.Fatalf("conditional GET: %d", resp.StatusCode)
	}
	for _, p := range []string{"/static/../../secret.txt", "/static/%2e%2e/%2e%2e/secret.txt", "/static/missing.css"} {
		if resp := get(p, nil); resp.StatusCode != 404 {
			t.Fatalf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestForwardedHeaders: X-Forwarded-For/-Proto count only from a trusted
// proxy.
func TestForwardedHeaders(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{"peer": "app = \"peer:application\"\nhosts = [\"*\"]\n"})
	os.WriteFile(filepath.Join(root, "peer", "peer.py"), []byte(`
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %s" % (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"])).encode()]
`), 0o644)
	for _, tc := range []struct {
		allow []string
		want  string
	}{
		{nil, "127.0.0.1 http"},
		{[]string{"127.0.0.1"}, "203.0.113.7 https"},
	} {
		var access strings.Builder
		srv, err := server.New(context.Background(), eng, server.Config{TenantDir: root, Ceiling: policies.DefaultCeiling,
			MemoryBudget: 1 << 30, ForwardedAllowIPs: tc.allow, AccessLog: &access})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		req, _ := http.NewRequest("GET", hs.URL+"/", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hs.Close()
		srv.Close()
		if string(b) != tc.want {
			t.Errorf("trusting %v: got %q, want %q", tc.allow, b, tc.want)
		}
		// The access log names the client as the app saw it.
		client, _, _ := strings.Cut(tc.want, " ")
		if line := access.String(); !strings.HasPrefix(line, client+" - - [") || !strings.Contains(line, `"GET / HTTP/1.1" 200 `) {
			t.Errorf("trusting %v: access log %q", tc.allow, line)
		}
	}
}

// TestRequestBodies: a chunked body over the tenant's limit, which cannot be
// refused before the app reads it, gets 413 once the app's read passes the
// limit; an app that ignores its body leaves the connection usable, with no
// panic in net/http (golang/go#68560, full duplex with an unread body).
func TestRequestBodies(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{
		"reader": "app = \"reader:application\"\nhosts = [\"reader.test\"]\n[policy]\nmax_body_bytes = 10\n",
		"ignore": "app = \"app:application\"\nhosts = [\"ignore.test\"]\n",
	})
	reader := `
def application(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"read %d" % len(data)]
`
	if err := os.WriteFile(filepath.Join(root, "reader", "reader.py"), []byte(reader), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), eng, server.Config{TenantDir: root, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var serverLog testlog.Buffer
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ErrorLog = log.New(&serverLog, "", 0)
	hs.Start()
	defer hs.Close()
	client := hs.Client()
	do := func(host string, body io.Reader) (int, string) {
		req, _ := http.NewRequest("POST", hs.URL+"/", body)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	chunked := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) } // no length: sent chunked
	for _, c := range []struct {
		host string
		body io.Reader
		code int
		want string
	}{
		{"reader.test", chunked("0123456789"), 200, "read 10"},
		{"reader.test", chunked(strings.Repeat("x", 5000)), 413, "Request Entity Too Large\n"},
		{"reader.test", strings.NewReader(strings.Repeat("x", 11)), 413, "Request Entity Too Large\n"},
		{"ignore.test", strings.NewReader(strings.Repeat("x", 5000)), 200, "ignore||/"},
		{"ignore.test", chunked(strings.Repeat("x", 5000)), 200, "ignore||/"},
		{"ignore.test", strings.NewReader(""), 200, "ignore||/"},
	} {
		if code, body := do(c.host, c.body); code != c.code || body != c.want {
			t.Errorf("POST %s: %d %q, want %d %q", c.host, code, body, c.code, c.want)
		}
	}
	if strings.Contains(serverLog.String(), "panic") {
		t.Errorf("net/http logged a panic:\n%s", serverLog.String())
	}
}
