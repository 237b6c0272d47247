package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWithPprof checks that --pprof adds the profiler's index and keeps the
// admin paths reaching the admin handler.
func TestWithPprof(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("admin " + r.URL.Path)) })
	h := withPprof(admin)
	for path, want := range map[string]string{
		"/debug/pprof/": "goroutine",
		"/metrics":      "admin /metrics",
		"/readyz":       "admin /readyz",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %.200q, want %q", path, rec.Code, rec.Body.String(), want)
		}
	}
}
