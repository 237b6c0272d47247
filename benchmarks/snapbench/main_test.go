package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

// TestSmoke runs the harness small and checks that the report has every
// table, filled with measured numbers.
func TestSmoke(t *testing.T) {
	testinterp.Require(t)
	flask := "../../examples/tenants/flask"
	if _, err := os.Stat(filepath.Join(flask, "site-packages", "flask")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Flask not vendored under CI: %v", err)
		}
		t.Skipf("run examples/vendor.sh first: %v", err)
	}
	out := filepath.Join(t.TempDir(), "SNAPSHOTS.md")
	err := Run(context.Background(), Params{
		FlaskDir: flask, Out: out, Restores: 3, Rounds: 2, MemSamples: 2, Tenants: 3, FreshTenant: 1,
		Checkpoints: []int{0, 3}, WorkDir: t.TempDir(), Command: "smoke",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	for _, want := range []string{
		"| fresh start (no snapshot) | 3 |", "| restore, private mapping, no write set yet | 3 |",
		"| restore, private mapping + write set (shipped) | 3 |", "| restore, eager copy | 3 |",
		"| on, first request since the build | 3 |", "| on, served before, round 2 | 3 |", "| on, served before, all rounds | 6 |", "| off | 1 |",
		"| on, shared base (--snapshot-base), first request since the build | 3 |", "| on, shared base (--snapshot-base), served before, all rounds | 6 |",
		"| restore, private mapping + write set, shared base (--snapshot-base) | 3 |", "warm Flask tenants per 8 GiB", "Extrapolated to 8 GiB",
		"| on, shared base | 3 |", "| on, warm-up path (`warmup = \"/\"`), first request since the build | 3 |",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	// Every timing cell is a measured, positive number.
	if m := regexp.MustCompile(`\| 0\.00 ms`).FindString(report); m != "" {
		t.Errorf("a zero timing in the report:\n%s", report)
	}
	if !regexp.MustCompile(`first request after a restore wrote [1-9]\d* pages`).MatchString(report) {
		t.Errorf("no write set measured:\n%s", report)
	}
	if !regexp.MustCompile(`of which [1-9][0-9.]* MiB are left to the base image's file`).MatchString(report) {
		t.Errorf("no pages shared with the base image:\n%s", report)
	}
	if !regexp.MustCompile(`\*\*\d+\*\* tenants with snapshots`).MatchString(report) {
		t.Errorf("no density figure:\n%s", report)
	}
}
