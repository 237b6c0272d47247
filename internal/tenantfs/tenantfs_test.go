package tenantfs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// layout makes a tenant folder with a file, a folder, a link to a folder
// outside, a link to a file outside and a FIFO, and returns it.
func layout(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "tenant"), filepath.Join(base, "other")
	for _, d := range []string{root + "/static/css", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(root+"/static/css/site.css", "body{}")
	write(root+"/app.py", "app = 1\n")
	write(outside+"/secret", "[env]\nTOKEN = \"other tenant\"\n")
	if err := os.Symlink(outside, root+"/static/etc"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside+"/secret", root+"/static/secret"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(root+"/fifo.py", 0o644); err != nil {
		t.Fatal(err)
	}
	return root, outside
}

func TestOpenRefusesLinksAnywhere(t *testing.T) {
	root, _ := layout(t)
	for _, rel := range []string{"static/etc/secret", "static/secret", "static/etc/../css/site.css"} {
		f, err := tenantfs.Open(root, rel)
		if err == nil {
			f.Close()
			t.Errorf("Open(%q) succeeded through a link", rel)
			continue
		}
		if !errors.Is(err, tenantfs.ErrLink) && !errors.Is(err, tenantfs.ErrOutside) {
			t.Errorf("Open(%q) = %v, want ErrLink or ErrOutside", rel, err)
		}
	}
	b, err := tenantfs.ReadFile(root, "static/css/site.css", 100)
	if err != nil || string(b) != "body{}" {
		t.Fatalf("ReadFile of a plain file = %q, %v", b, err)
	}
}

func TestOpenRefusesClimbingOut(t *testing.T) {
	root, _ := layout(t)
	for _, rel := range []string{"../other/secret", "/etc/passwd", "static/../../other/secret", ""} {
		if f, err := tenantfs.Open(root, rel); !errors.Is(err, tenantfs.ErrOutside) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrOutside", rel, err)
		}
	}
}

func TestOpenDoesNotBlockOnFIFO(t *testing.T) {
	root, _ := layout(t)
	done := make(chan error, 1)
	go func() {
		_, err := tenantfs.ReadFile(root, "fifo.py", 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, tenantfs.ErrNotRegular) {
			t.Fatalf("ReadFile(FIFO) = %v, want ErrNotRegular", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFile of a FIFO blocked")
	}
	if _, err := tenantfs.Open(root, "static"); !errors.Is(err, tenantfs.ErrNotRegular) {
		t.Fatalf("Open(folder) = %v, want ErrNotRegular", err)
	}
}

func TestReadFileBound(t *testing.T) {
	root, _ := layout(t)
	if _, err := tenantfs.ReadFile(root, "app.py", 3); !errors.Is(err, tenantfs.ErrTooLarge) {
		t.Fatalf("ReadFile over its bound = %v, want ErrTooLarge", err)
	}
	if b, err := tenantfs.ReadFile(root, "app.py", 8); err != nil || len(b) != 8 {
		t.Fatalf("ReadFile at its bound = %q, %v", b, err)
	}
}

func TestWalkReportsLinksWithoutFollowing(t *testing.T) {
	root, _ := layout(t)
	var got []string
	err := tenantfs.Walk(root, func(e tenantfs.Entry) error {
		kind := "file"
		switch {
		case e.Type&fs.ModeSymlink != 0:
			kind = "link"
		case e.Type.IsDir():
			kind = "dir"
		case e.Type&fs.ModeNamedPipe != 0:
			kind = "fifo"
		}
		got = append(got, kind+" "+e.Rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"file app.py", "fifo fifo.py", "dir static", "dir static/css", "file static/css/site.css", "link static/etc", "link static/secret"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Walk (-want +got):\n%s", diff)
	}
}

func TestWalkSkipDir(t *testing.T) {
	root, _ := layout(t)
	var got []string
	err := tenantfs.Walk(root, func(e tenantfs.Entry) error {
		got = append(got, e.Rel)
		if e.Rel == "static" {
			return tenantfs.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"app.py", "fifo.py", "static"}, got); diff != "" {
		t.Fatalf("Walk with SkipDir (-want +got):\n%s", diff)
	}
}

// TestOpenClosesWhatItOpened: Open of a nested path leaves no descriptor
// open and closes none twice (a second close would hit a descriptor that
// another goroutine opened meanwhile).
func TestOpenClosesWhatItOpened(t *testing.T) {
	root, _ := layout(t)
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	if err := os.MkdirAll(filepath.Join(root, "a/b/c/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "a/b/c/d/f.py"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "a/b/c/f.py"), nil, 0o644)
	keep, err := os.Open(filepath.Join(root, "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	before := count()
	for i := range 100 {
		f, err := tenantfs.Open(root, []string{"a/b/c/f.py", "a/b/c/d/f.py", "app.py"}[i%3])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Stat(); err != nil {
			t.Fatalf("the file Open returned is closed: %v", err)
		}
		f.Close()
		// A descriptor opened now takes the number a double close would
		// close under it.
		probe, err := os.Open(filepath.Join(root, "app.py"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := probe.Stat(); err != nil {
			t.Fatalf("a descriptor opened after Open was closed under it: %v", err)
		}
		probe.Close()
	}
	if _, err := keep.Stat(); err != nil {
		t.Fatalf("a descriptor opened before Open was closed: %v", err)
	}
	if after := count(); after != before {
		t.Fatalf("descriptors %d -> %d", before, after)
	}
}

// TestWalkDepthBounded: a tree nested deeper than MaxDepth is an error,
// not a descriptor per level without end.
func TestWalkDepthBounded(t *testing.T) {
	root := t.TempDir()
	deep := root
	for range tenantfs.MaxDepth + 5 {
		deep = filepath.Join(deep, "d")
		if err := os.Mkdir(deep, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := tenantfs.Walk(root, func(tenantfs.Entry) error { return nil }); !errors.Is(err, tenantfs.ErrTooDeep) {
		t.Fatalf("Walk of a tree %d levels deep = %v, want ErrTooDeep", tenantfs.MaxDepth+5, err)
	}
}
