package tomlfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tomlfile"
)

type config struct {
	Name    string             `toml:"name"`
	Timeout *tomlfile.Duration `toml:"timeout"`
	Limits  struct {
		Memory int `toml:"memory"`
	} `toml:"limits"`
}

func TestDecode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("name = \"x\"\ntimeout = \"2s\"\n[limits]\nmemory = 3\n"), 0o644)
	var c config
	if err := tomlfile.Decode(path, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "x" || c.Timeout == nil || time.Duration(*c.Timeout) != 2*time.Second || c.Limits.Memory != 3 {
		t.Fatalf("decoded %+v", c)
	}
}

// TestDecodeErrors: every error names the file, the line and the key.
func TestDecodeErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		body   string
		line   int
		key    string
		reason string
	}{
		"unknown key":        {"name = \"x\"\n\nbogus = 1\n", 3, "bogus", "unknown key"},
		"unknown table":      {"name = \"x\"\n[extra]\na = 1\n", 2, "extra", "unknown key"},
		"unknown nested key": {"[limits]\n  memory = 1\n  # a comment = 2\n  cpu = 2\n", 4, "limits.cpu", "unknown key"},
		"unknown dotted key": {"name = \"x\"\nlimits.\"disk\" = 1\n", 2, "limits.disk", "unknown key"},
		"syntax":             {"name = \"x\ntimeout = 1\n", 1, "name", "strings cannot contain newlines"},
		"wrong type":         {"name = \"x\"\n[limits]\nmemory = \"lots\"\n", 3, "limits.memory", "incompatible types"},
		"duration number":    {"timeout = 30\n", 1, "timeout", "want a duration"},
		"bad duration":       {"\ntimeout = \"soon\"\n", 2, "timeout", "want a duration"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(path, []byte(tc.body), 0o644)
			err := tomlfile.Decode(path, &config{})
			var e *tomlfile.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *tomlfile.Error", err)
			}
			if e.File != path || e.Line != tc.line || (tc.key != "" && e.Key != tc.key) || !strings.Contains(e.Reason, tc.reason) {
				t.Fatalf("got %+v (%q); want line %d, key %q, reason with %q", *e, err, tc.line, tc.key, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Fatalf("message %q does not start with the file", err)
			}
		})
	}
}

func TestLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("name = \"x\"\n[static]\n\"/s\" = \"a\"\n[limits]\nmemory = 3\n"), 0o644)
	for key, want := range map[string]int{"name": 1, "static./s": 3, "limits": 4, "limits.memory": 5, "missing": 0} {
		if got := tomlfile.Line(path, key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
}
