package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
)

// startRun runs `wsgi-wasm run` on dir with extra flags, waits until the
// app answers 200 at /, and kills the process when the test ends.
func startRun(t *testing.T, dir, app string, args ...string) *serveProc {
	t.Helper()
	return startRunArgs(t, append(args, dir, app)...)
}

// startRunArgs is startRun with run's arguments and flags as given.
func startRunArgs(t *testing.T, args ...string) *serveProc {
	t.Helper()
	in := testinterp.Require(t)
	p := &serveProc{addr: freeAddr(t), logs: &testlog.Buffer{}, access: &testlog.Buffer{}, waited: make(chan error, 1)}
	args = append([]string{"run", "--bind", p.addr}, args...)
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
	p.cmd.Stderr, p.cmd.Stdout = p.logs, p.access
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.wait()
	})
	p.waitFor200(t, "run serving", "", "http://"+p.addr+"/", 90*time.Second)
	return p
}

// TestRunAnswersAsServe: `run` prepares requests as `serve` does (its
// request limits, body limit, deadline and queue): the same requests get
// the same statuses from `run` with the limits tenant's policy as flags
// and from `serve` with its tenant.toml.
func TestRunAnswersAsServe(t *testing.T) {
	tree := copyTenants(t, "limits")
	serve := startServe(t, tree)
	run := startRun(t, filepath.Join(tree, "limits"), "app:application",
		"--timeout", "1s", "--max-body-bytes", "100", "--workers", "1", "--backlog", "1", "--snapshot-dir", t.TempDir())
	serve.waitFor200(t, "limits tenant serving", "limits.test", "http://"+serve.addr+"/", 60*time.Second)
	many := http.Header{}
	huge := http.Header{}
	for i := 0; i < 101; i++ {
		many.Set(fmt.Sprintf("X-Field-%d", i), "v")
		if i < 20 {
			huge.Set(fmt.Sprintf("X-Field-%d", i), strings.Repeat("v", 8000))
		}
	}
	for _, tc := range []struct {
		name, method, path string
		body               string
		header             http.Header
		code               int
	}{
		{"within limits", "POST", "/", strings.Repeat("b", 100), nil, 200},
		{"request line over 4094 bytes", "GET", "/" + strings.Repeat("a", 4094), "", nil, 414},
		{"101 header fields", "GET", "/", "", many, 431},
		{"a header field over 8190 bytes", "GET", "/", "", http.Header{"X-Big": {strings.Repeat("v", 8190)}}, 431},
		{"headers over 64 KiB", "GET", "/", "", huge, 431},
		{"body over max_body_bytes", "POST", "/", strings.Repeat("b", 101), nil, 413},
		{"past request_timeout", "GET", "/spin", "", nil, 504},
	} {
		for _, p := range []struct {
			cmd  string
			proc *serveProc
		}{{"serve", serve}, {"run", run}} {
			req, _ := http.NewRequest(tc.method, "http://"+p.proc.addr+tc.path, strings.NewReader(tc.body))
			req.Host = "limits.test"
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s: %s: %v", p.cmd, tc.name, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%s: %s: %d, want %d", p.cmd, tc.name, resp.StatusCode, tc.code)
			}
		}
	}
}

// TestRunAsGunicornIsRun: run takes gunicorn's habits: flags after the
// app, --chdir instead of DIR, --timeout in seconds, --env (a value with a
// comma stays whole), and --reload serves changed code.
func TestRunAsGunicornIsRun(t *testing.T) {
	dir := filepath.Join(copyTenants(t, "reload"), "reload")
	app := "import os\nVERSION = %q\n\ndef application(environ, start_response):\n" +
		"    start_response('200 OK', [('Content-Type', 'text/plain')])\n" +
		"    return [(VERSION + ' ' + os.environ.get('GREETING', '-')).encode()]\n"
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(fmt.Sprintf(app, "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startRunArgs(t, "app:application", "--chdir", dir, "--env", "GREETING=hello, world", "--timeout", "5", "--reload", "--snapshot-dir", t.TempDir())
	if _, body, err := get("", "http://"+p.addr+"/"); err != nil || body != "v1 hello, world" {
		t.Fatalf("first answer %q %v", body, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(fmt.Sprintf(app, "v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, body, _ := get("", "http://"+p.addr+"/"); body == "v2 hello, world" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("--reload: the changed app was not served within a minute; log:\n%s", p.logs.String())
		}
	}
}

// TestRunPythonPath: --pythonpath puts folders of the app folder first on
// sys.path, in the order given (comma-separated or repeated), so an app
// living in src/ imports from src/ and lib/; a folder outside the app
// folder, absolute, or missing is refused naming it, before any
// interpreter starts.
func TestRunPythonPath(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"src/webapp.py": "import sys, helper\n\ndef app(environ, start_response):\n" +
			"    start_response('200 OK', [('Content-Type', 'text/plain')])\n" +
			"    return [(helper.NAME + ' ' + ' '.join(sys.path[:4])).encode()]\n",
		"lib/helper.py":  "NAME = 'lib'\n",
		"lib2/helper.py": "NAME = 'lib2'\n",
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := startRunArgs(t, "--pythonpath", "src,./lib", "--pythonpath", "lib2", dir, "webapp:app")
	want := "lib /app/src /app/lib /app/lib2 /app"
	if _, body, err := get("", "http://"+p.addr+"/"); err != nil || body != want {
		t.Fatalf("answer %q %v, want %q; log:\n%s", body, err, want, p.logs.String())
	}

	for _, c := range []struct{ flag, want string }{
		{"../elsewhere", `--pythonpath "../elsewhere": want a folder inside ` + dir},
		{"src/../..", `--pythonpath "src/../..": want a folder inside ` + dir},
		{"/etc", `--pythonpath "/etc": want a folder inside ` + dir},
		{"nosuch", `--pythonpath "nosuch": ` + filepath.Join(dir, "nosuch") + " is not a folder"},
		{"src/webapp.py", " is not a folder"},
	} {
		out, err := exec.Command(binary(t), "run", "--pythonpath", c.flag, dir, "webapp:app").CombinedOutput()
		// The log line quotes the message: its quotes come escaped.
		said := strings.ReplaceAll(string(out), `\"`, `"`)
		if code := exitCode(t, err); code != 1 || !strings.Contains(said, c.want) {
			t.Errorf("--pythonpath %s: exit %d, output %q; want exit 1 saying %q", c.flag, code, out, c.want)
		}
	}
}
