package testservices

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// NativePython is Debian's CPython 3.11, the version the sandbox runs: the
// outbound scripts run on it natively as they will in the sandbox.
const NativePython = "/usr/bin/python3.11"

// Outbound is the folder of the outbound round-trip scripts
// (testdata/outbound/*.py), which other packages' tests run in the sandbox
// too. Each takes its server from the variables of PG.Env, MySQL.Env or
// RedisDB.Env (or those its comment names) and prints one JSON object on
// its last line.
func Outbound() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "outbound")
}

// SitePackages is the folder of the client libraries the scripts import
// (pg8000, PyMySQL, redis-py, SQLAlchemy, requests, Django), vendored from
// Debian by `make vendor`; a test ends (fails under CI, is skipped
// elsewhere) if it is missing.
func SitePackages(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(Outbound(), "site-packages")
	if _, err := os.Stat(filepath.Join(dir, "pg8000")); err != nil {
		unavailable(tb, "client libraries not vendored in %s (run `make vendor`)", dir)
	}
	return dir
}

// RunNative runs an outbound script on NativePython with the vendored
// libraries (PYTHONPATH; -S: not the host's own) and env, within a minute,
// and decodes the JSON object on its last line of output. A script that
// fails ends the test with its output.
func RunNative(tb testing.TB, script string, env ...string) map[string]any {
	tb.Helper()
	result, output, err := runNative(tb, script, env...)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", script, err, output)
	}
	return result
}

// runNative is RunNative returning the failure and the script's output.
func runNative(tb testing.TB, script string, env ...string) (map[string]any, string, error) {
	tb.Helper()
	if _, err := os.Stat(NativePython); err != nil {
		unavailable(tb, "%s missing (Debian's python3.11)", NativePython)
	}
	site := SitePackages(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, NativePython, "-S", "-W", "ignore::DeprecationWarning", filepath.Join(Outbound(), script))
	cmd.Env = append([]string{"PYTHONPATH=" + site, "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8", "LANG=C.UTF-8"}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	output := "stdout:\n" + stdout.String() + "stderr:\n" + stderr.String()
	if err != nil {
		return nil, output, err
	}
	out := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	var result map[string]any
	if err := json.Unmarshal(out, &result); err != nil {
		return nil, output, fmt.Errorf("last line is not a JSON object: %w", err)
	}
	return result, output, nil
}
