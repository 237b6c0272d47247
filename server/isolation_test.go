package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// serveTree serves the tenants below root (with the default ceiling and a
// 1 GiB budget unless cfg says otherwise) until the test ends.
func serveTree(t *testing.T, eng *sandbox.Engine, root string, cfg server.Config) (*server.Server, *httptest.Server) {
	t.Helper()
	cfg.TenantDir = root
	if cfg.Ceiling.MemoryMB == 0 { // no ceiling given
		cfg.Ceiling = policies.DefaultCeiling
	}
	if cfg.MemoryBudget == 0 {
		cfg.MemoryBudget = 1 << 30
	}
	srv, err := server.New(context.Background(), eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return srv, hs
}

// get sends GET host+path to base and returns the status and body.
func get(t *testing.T, base, host, path string) (int, string) {
	t.Helper()
	return send(t, "GET", base, host, path, nil)
}

// send sends a request with body to base, for host and path, and returns
// the status and body.
func send(t *testing.T, method, base, host, path string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, body)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStaticLinksPlantedAfterLoad: links a tenant plants in its static
// folder after it was loaded (a deploy that the reload then refuses, while
// the old version keeps serving from the same folder) lead nowhere: not to
// the host's files, not to another tenant's tenant.toml; a FIFO is not
// waited on.
func TestStaticLinksPlantedAfterLoad(t *testing.T) {
	eng := testEngine(t)
	root := tenantDir(t, map[string]string{
		"files":  "app = \"app:application\"\nhosts = [\"files.test\"]\n[static]\n\"/static\" = \"assets\"\n",
		"victim": "app = \"app:application\"\nhosts = [\"victim.test\"]\n[env]\nTOKEN = \"victim-secret\"\n",
	})
	_, hs := serveTree(t, eng, root, server.Config{})
	if code, body := get(t, hs.URL, "files.test", "/static/css/site.css"); code != 200 || body != "body{}" {
		t.Fatalf("static file before: %d %q", code, body)
	}
	assets := filepath.Join(root, "files", "assets")
	for link, target := range map[string]string{
		"victim": filepath.Join(root, "victim"), // a folder of another tenant
		"etc":    "/etc",                        // the host's
		"passwd": "/etc/passwd",                 // a file, as the last component
		"css2":   filepath.Join(assets, "css"),  // inside, but still a link
		"toml":   filepath.Join(root, "victim", "tenant.toml"),
	} {
		if err := os.Symlink(target, filepath.Join(assets, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(assets, "pipe.css"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/static/victim/tenant.toml", "/static/etc/passwd", "/static/passwd", "/static/css2/site.css",
		"/static/toml", "/static/pipe.css", "/static/css/../victim/tenant.toml",
	} {
		done := make(chan struct{})
		var code int
		var body string
		go func() { defer close(done); code, body = get(t, hs.URL, "files.test", p) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("GET %s did not answer", p)
		}
		if code != 404 || strings.Contains(body, "victim-secret") || strings.Contains(body, "root:") {
			t.Errorf("GET %s: %d %.80q, want 404", p, code, body)
		}
	}
	if code, _ := get(t, hs.URL, "files.test", "/static/css/site.css"); code != 200 {
		t.Fatalf("static file after: %d", code)
	}
}

// TestHostClaims: a tenant cannot take another tenant's host, neither with
// the same prefix nor with a longer one; at start both claimants are
// refused (503), on a reload the tenant that served the host keeps it.
func TestHostClaims(t *testing.T) {
	eng := testEngine(t)
	victim := "app = \"app:application\"\nhosts = [\"victim.test\"]\n"
	thief := "app = \"app:application\"\nhosts = [\"victim.test\"]\npath_prefix = \"/login\"\n"

	t.Run("at start", func(t *testing.T) {
		thief := "app = \"app:application\"\nhosts = [\"victim.test\", \"thief.test\"]\npath_prefix = \"/login\"\n"
		root := tenantDir(t, map[string]string{"victim": victim, "athief": thief, "other": "app = \"app:application\"\nhosts = [\"*\"]\n"})
		logs := &testlog.Buffer{}
		_, hs := serveTree(t, eng, root, server.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
		for _, p := range []string{"/", "/login"} {
			if code, body := get(t, hs.URL, "victim.test", p); code != 503 {
				t.Errorf("GET victim.test%s: %d %q, want 503 (claimed twice)", p, code, body)
			}
		}
		if code, body := get(t, hs.URL, "thief.test", "/login"); code != 503 {
			t.Errorf("GET thief.test/login, the refused tenant's other host: %d %q, want 503", code, body)
		}
		if code, body := get(t, hs.URL, "else.test", "/"); code != 200 || !strings.HasPrefix(body, "other|") {
			t.Errorf("the catch-all: %d %q", code, body)
		}
		if !strings.Contains(logs.String(), `is also claimed by tenant`) {
			t.Errorf("no log line names the conflict:\n%s", logs.String())
		}
	})

	t.Run("on reload", func(t *testing.T) {
		root := tenantDir(t, map[string]string{"victim": victim})
		srv, hs := serveTree(t, eng, root, server.Config{})
		os.MkdirAll(filepath.Join(root, "athief"), 0o755)
		os.WriteFile(filepath.Join(root, "athief", "app.py"), []byte("TAG = \"thief\"\n"+echoApp), 0o644)
		os.WriteFile(filepath.Join(root, "athief", "tenant.toml"), []byte(thief), 0o644)
		if err := srv.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if code, body := get(t, hs.URL, "victim.test", "/login/form"); code != 200 || !strings.HasPrefix(body, "victim|") {
			t.Errorf("GET victim.test/login/form after the thief's reload: %d %q, want the victim's", code, body)
		}
	})

	t.Run("a wildcard reserves its names", func(t *testing.T) {
		root := tenantDir(t, map[string]string{"victim": "app = \"app:application\"\nhosts = [\"*.shop.test\"]\n"})
		srv, hs := serveTree(t, eng, root, server.Config{})
		for _, hosts := range []string{`["pay.shop.test"]`, `["*.eu.shop.test"]`} {
			os.MkdirAll(filepath.Join(root, "athief"), 0o755)
			os.WriteFile(filepath.Join(root, "athief", "app.py"), []byte("TAG = \"thief\"\n"+echoApp), 0o644)
			os.WriteFile(filepath.Join(root, "athief", "tenant.toml"), []byte("app = \"app:application\"\nhosts = "+hosts+"\n"), 0o644)
			if err := srv.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, host := range []string{"pay.shop.test", "a.eu.shop.test"} {
				if code, body := get(t, hs.URL, host, "/"); code != 200 || !strings.HasPrefix(body, "victim|") {
					t.Errorf("thief claiming %s: GET %s: %d %q, want the victim's", hosts, host, code, body)
				}
			}
		}
	})

	t.Run("a refused tenant cannot take down a name it lists", func(t *testing.T) {
		root := tenantDir(t, map[string]string{
			"victim": "app = \"app:application\"\nhosts = [\"*.shop.test\"]\n",
			"athief": "app = \"app:application\"\nhosts = [\"pay.shop.test\"]\n",
		})
		_, hs := serveTree(t, eng, root, server.Config{HostAssignments: map[string][]string{"victim": {"*.shop.test"}, "athief": {"thief.test"}}})
		if code, body := get(t, hs.URL, "pay.shop.test", "/"); code != 200 || !strings.HasPrefix(body, "victim|") {
			t.Errorf("GET pay.shop.test: %d %q, want the victim's (the thief, refused, only listed it)", code, body)
		}
	})

	t.Run("assigned by the operator", func(t *testing.T) {
		root := tenantDir(t, map[string]string{"victim": victim, "athief": thief})
		_, hs := serveTree(t, eng, root, server.Config{HostAssignments: map[string][]string{"victim": {"victim.test"}, "athief": {"*.thief.test"}}})
		if code, body := get(t, hs.URL, "victim.test", "/login"); code != 200 || !strings.HasPrefix(body, "victim|") {
			t.Errorf("GET victim.test/login: %d %q, want the victim's (the thief was not assigned victim.test)", code, body)
		}
	})
}

// TestZeroLimitsMeanWhatTheySay: max_body_bytes = 0 takes no body (it
// passes a 1 KiB ceiling as the stricter value it is), and queue_length = 0
// lets no request wait for the busy instance.
func TestZeroLimitsMeanWhatTheySay(t *testing.T) {
	eng := testEngine(t)
	ceiling := policies.DefaultCeiling
	ceiling.MaxBodyBytes = 1024
	root := tenantDir(t, map[string]string{
		"nobody": "app = \"app:application\"\nhosts = [\"nobody.test\"]\n[policy]\nmax_body_bytes = 0\n",
		"noqueue": "app = \"slow:application\"\nhosts = [\"noqueue.test\"]\n[policy]\nmax_body_bytes = 0\nmax_instances = 1\nqueue_length = 0\n" +
			"[pool]\nmin_warm = 1\n",
	})
	slow := "import time\ndef application(environ, start_response):\n    time.sleep(float(environ['QUERY_STRING'] or 0))\n" +
		"    start_response('200 OK', [])\n    return [b'done']\n"
	if err := os.WriteFile(filepath.Join(root, "noqueue", "slow.py"), []byte(slow), 0o644); err != nil {
		t.Fatal(err)
	}
	_, hs := serveTree(t, eng, root, server.Config{Ceiling: ceiling})

	post := func(body string) int {
		req, _ := http.NewRequest("POST", hs.URL+"/", strings.NewReader(body))
		req.Host = "nobody.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("x"); code != 413 {
		t.Errorf("a 1-byte body with max_body_bytes = 0: %d, want 413", code)
	}
	if code := post(""); code != 200 {
		t.Errorf("no body with max_body_bytes = 0: %d, want 200", code)
	}

	// Wait for the instance, then keep it busy for a few seconds.
	deadline := time.Now().Add(time.Minute)
	for code, _ := get(t, hs.URL, "noqueue.test", "/"); code != 200; code, _ = get(t, hs.URL, "noqueue.test", "/") {
		if time.Now().After(deadline) {
			t.Fatalf("noqueue never answered 200 (last %d)", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// While a slow request holds the only instance, another gets 503 at
	// once. The two race for the instance at first: when the probe wins,
	// the slow request is the one refused, and the round is tried again.
	for round := 0; ; round++ {
		if round == 5 {
			t.Fatal("in 5 rounds no request was refused while a slow one held the instance: queue_length = 0 queued")
		}
		busy := make(chan int, 1)
		go func() { code, _ := get(t, hs.URL, "noqueue.test", "/?3"); busy <- code }()
		refused := false
		for slow := 0; slow == 0; {
			select {
			case slow = <-busy:
			default:
				code, _ := get(t, hs.URL, "noqueue.test", "/")
				refused = refused || code == 503
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if slow == 200 && refused {
				return
			}
		}
	}
}
