package sandbox_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestSandbox probes, from inside the guest, every way out the issue names:
// host files, symlinks in and out, links planted by the guest, the host
// environment and another tenant's folder.
func TestSandbox(t *testing.T) {
	t.Setenv("HOST_SECRET", "must-not-leak")
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("secret-outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(data, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(data, "file-link")); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(context.Background(), sandbox.AppConfig{
		App: "sandbox:probe", Dir: "testdata/apps", DataDir: data,
		Env: map[string]string{"TENANT_SETTING": "1"}, Log: logs.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	rec := httptest.NewRecorder()
	pool.ServeInstance(inst, rec, httptest.NewRequest("GET", "/", nil), pool.RequestInfo{}, logs.log)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s\nlog:\n%s", err, rec.Body.String(), logs)
	}
	want := map[string]any{
		"env": []any{"TENANT_SETTING", sandbox.EnvDataDir},
		// Outside every mount wasi-libc finds no preopened folder: EACCES.
		"etc_passwd":       "PermissionError",
		"climb":            "PermissionError",
		"root_listing":     "PermissionError",
		"write_app":        "OSError",
		"write_data":       "ok",
		"read_data":        "x",
		"follow_link_out":  "FileNotFoundError",
		"follow_file_link": "FileNotFoundError",
		"make_symlink":     "PermissionError",
		"make_hardlink":    "PermissionError",
		"other_tenant":     "PermissionError",
		// /dev holds null and nothing else of the host's.
		"devnull_write": "ok",
		"devnull_read":  float64(0),
		"dev_listing":   []any{"null"},
		"dev_other":     "FileNotFoundError",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("sandbox probe (-want +got):\n%s", diff)
	}
	if _, err := os.Lstat(filepath.Join(data, "planted")); err == nil {
		t.Fatal("guest planted a symlink")
	}
}
