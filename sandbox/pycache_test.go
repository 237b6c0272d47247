package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestCompileAppRejectsSymlinks: an app folder with a symbolic link is
// refused at load, with the link named.
func TestCompileAppRejectsSymlinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "secrets")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	_, err := testEngine(t).CompileApp(context.Background(), dir, 0)
	if !errors.Is(err, sandbox.ErrSymlinkInApp) || !strings.Contains(err.Error(), link) {
		t.Fatalf("err = %v, want ErrSymlinkInApp naming %s", err, link)
	}
}

// TestCompileAppCachesByContent: the same sources give the same cache
// folder with the .pyc in it; a changed source gives a new one.
func TestCompileAppCachesByContent(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.py")
	if err := os.WriteFile(src, []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng := testEngine(t)
	first, err := eng.CompileApp(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(first, "app", "app.cpython-311.pyc")); err != nil {
		t.Fatalf("no .pyc in %s: %v", first, err)
	}
	again, _ := eng.CompileApp(context.Background(), dir, 0)
	if again != first {
		t.Fatalf("unchanged sources compiled again: %s vs %s", again, first)
	}
	if err := os.WriteFile(src, []byte("x = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, _ := eng.CompileApp(context.Background(), dir, 0)
	if changed == first {
		t.Fatal("changed sources reused the old .pyc folder")
	}
}
