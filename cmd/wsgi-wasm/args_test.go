package main

import (
	"log/slog"
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	app := newApp(slog.New(slog.DiscardHandler), new(slog.LevelVar), new(int))
	for _, c := range []struct{ in, want string }{
		{"w run app:application --workers 4 -b :9000", "w run --workers 4 -b :9000 app:application"},
		{"w --quiet run . app:app --timeout=10 --reload", "w --quiet run --timeout=10 --reload . app:app"},
		{"w --python-dir /p run app:app -w 2", "w --python-dir /p run -w 2 app:app"},
		{"w run --workers 4 app:app", "w run --workers 4 app:app"},
		{"w check tenants --import=false", "w check --import=false tenants"},
		{"w python --env A=1 -- -c print(1) --workers", "w python --env A=1 -- -c print(1) --workers"},
		{"w python -- -m x", "w python -- -m x"},
		{"w nosuch a --b c", "w nosuch a --b c"},
		{"w", "w"},
	} {
		if got := strings.Join(flagsFirst(app, strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("flagsFirst(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestKeyValues: --env of run, exec and python keeps commas and further =
// in a value (a password), and refuses what is not KEY=VALUE or not a
// variable name.
func TestKeyValues(t *testing.T) {
	var kv keyValues
	for _, v := range []string{"PASSWORD=a, b=c", "B=", "A_1=x"} {
		if err := kv.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if got, want := strings.Join(kv.pairs(), "|"), "A_1=x|B=|PASSWORD=a, b=c"; got != want {
		t.Errorf("pairs %q, want %q", got, want)
	}
	for _, bad := range []string{"=x", "NOEQUALS", "1A=x", "A B=x"} {
		if err := kv.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
