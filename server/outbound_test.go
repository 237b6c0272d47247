package server_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testservices"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// TestOutboundToPostgres serves the notes-pg example against a real
// PostgreSQL on loopback: the tenant whose rule names the server's address
// keeps notes in it (the connection reused across requests); the same app
// without the rule gets a 503 whose reason is the refusal, and the host's
// log names the destination and the missing rule.
func TestOutboundToPostgres(t *testing.T) {
	pg := testservices.Postgres(t)
	example := filepath.Join("..", "examples", "tenants", "notes-pg")
	if _, err := os.Stat(filepath.Join(example, "site-packages", "pg8000")); err != nil {
		t.Fatalf("notes-pg is not vendored (make vendor): %v", err)
	}
	root := t.TempDir()
	for name, policy := range map[string]string{
		"allowed": fmt.Sprintf("[policy]\noutbound = [%q]\n", pg.Addr()),
		"denied":  "",
	} {
		dir := filepath.Join(root, name)
		if err := os.CopyFS(dir, os.DirFS(example)); err != nil {
			t.Fatal(err)
		}
		toml := fmt.Sprintf("app = \"app:app\"\nhosts = [%q]\n[env]\nNOTES_DATABASE_URL = %q\n%s", name+".test", pg.URL(), policy)
		if err := os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logs := &testlog.Buffer{}
	_, hs := serveTree(t, testEngine(t), root, server.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	for i := 0; i < 3; i++ {
		if code, body := send(t, "POST", hs.URL, "allowed.test", "/notes", strings.NewReader(fmt.Sprintf("note %d", i))); code != 201 {
			t.Fatalf("POST %d: %d %s\nlog:\n%s", i, code, body, logs)
		}
	}
	code, body := get(t, hs.URL, "allowed.test", "/notes")
	if code != 200 || !strings.Contains(body, "note 0") || !strings.Contains(body, "note 2") {
		t.Fatalf("GET /notes: %d %s", code, body)
	}
	code, body = get(t, hs.URL, "denied.test", "/notes")
	if code != 503 || !strings.Contains(body, "refused") {
		t.Fatalf("without a rule: %d %q, want a 503 saying the connection was refused", code, body)
	}
	if !strings.Contains(logs.String(), "outbound connection refused") || !strings.Contains(logs.String(), pg.Addr()) {
		t.Fatalf("the log does not name the refused destination:\n%s", logs)
	}
}

func TestMain(m *testing.M) { testservices.Main(m) }
