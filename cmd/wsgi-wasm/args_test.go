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
