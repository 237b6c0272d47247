package main

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
)

// TestQuietServe checks that the global --quiet reaches serve: its info
// records (the "serving" line, access records) are dropped, while without
// it they are written.
func TestQuietServe(t *testing.T) {
	in := testinterp.Require(t)
	bin := binary(t)
	for _, quiet := range []bool{false, true} {
		admin := freeAddr(t)
		args := []string{"serve", "--tenant-dir", t.TempDir(), "--bind", freeAddr(t), "--admin-bind", admin}
		if quiet {
			args = append([]string{"--quiet"}, args...)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
		logs := &testlog.Buffer{}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + admin + "/livez")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("server not live; log:\n%s", logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
		if got := strings.Contains(logs.String(), "level=INFO"); got == quiet {
			t.Errorf("quiet=%v: info records written=%v; log:\n%s", quiet, got, logs.String())
		}
	}
}
