package sandbox_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// TestStartResponse: each way an app can misuse start_response or write is a
// 500 with the reason in the tenant's log, raised where the app called it;
// the lawful uses (keywords, latin-1, exc_info) work. A status or header
// error is raised in start_response, so the traceback names the app's line.
// wsgi.errors is flushed when its request ends. One instance serves
// every case in turn: a failed request leaves nothing behind for the next.
func TestStartResponse(t *testing.T) {
	inst, logs := newInstance(t, "startresponse:app")
	const header = "_wsgi_bootstrap.HeaderError: "
	for _, c := range []struct {
		query, log string
		code       int
		body       string
	}{
		{"status-bytes", header + "status must be str, not bytes", 500, ""},
		{"status-short", header + "status must be 'NNN Reason', got '200'", 500, ""},
		{"status-zero", header + "status must be 'NNN Reason', got '099 Low'", 500, ""},
		{"headers-tuple", header + "headers must be a list, not tuple", 500, ""},
		{"header-not-pair", header + "each header must be a (name, value) tuple: 'X-A'", 500, ""},
		{"header-name-int", header + "header name must be str, not int", 500, ""},
		{"header-value-none", header + "header X-A value must be str, not NoneType", 500, ""},
		{"header-value-euro", header + "header X-Euro value is not latin-1: '\u20ac'", 500, ""},
		{"header-value-nul", header + "header X-A value contains CR, LF or NUL: 'a\\x00b'", 500, ""},
		{"header-name-crlf", header + "header name contains CR, LF or NUL: 'X-A\\r\\nInjected'", 500, ""},
		{"header-name-space", header + "invalid header name 'X A'", 500, ""},
		{"header-name-empty", header + "invalid header name ''", 500, ""},
		{"hop-by-hop", header + "hop-by-hop header 'KEEP-alive' is the server's to set", 500, ""},
		{"twice", "AssertionError: start_response called twice without exc_info", 500, ""},
		{"str-body", "TypeError: response body chunks must be bytes, not str", 500, ""},
		{"no-start", "AssertionError: the app returned or wrote a body before calling start_response", 500, ""},
		{"errors-partial", "a line without its end", 200, "ok"},
		{"keywords", "", 201, "written, returned"},
		{"latin-1", "", 200, "ok"},
		{"error-before-body", "", 503, "busy"},
		{"error-after-body", "ValueError: too late", 200, "partial"},
	} {
		t.Run(c.query, func(t *testing.T) {
			before := len(logs.String())
			rec, o := do(inst, httptest.NewRequest("GET", "/?"+c.query, nil), logs)
			logged := logs.String()[before:]
			if rec.Code != c.code || (c.body != "" && rec.Body.String() != c.body) || !strings.Contains(logged, c.log) {
				t.Fatalf("got %d %q, outcome %+v; want %d %q and a log with %q; log:\n%s", rec.Code, rec.Body.String(), o, c.code, c.body, c.log, logged)
			}
			if c.log == "" && logged != "" {
				t.Fatalf("logged %q", logged) // nothing left over from an earlier request
			}
			if c.code == 500 && (o.Result != hostabi.HandleAppError || !o.Reusable() || rec.Body.String() != "Internal Server Error\n") {
				t.Fatalf("outcome %+v body %q", o, rec.Body.String())
			}
			raisedInStart := strings.HasPrefix(c.log, header) || c.query == "twice"
			if raisedInStart && !strings.Contains(logged, "startresponse.py") {
				t.Fatalf("traceback does not name the app's line:\n%s", logged)
			}
		})
	}
	if rec, _ := do(inst, httptest.NewRequest("GET", "/?latin-1", nil), logs); rec.Header().Get("X-Latin") != "caf\xe9" { // latin-1, as sent
		t.Errorf("X-Latin = %q", rec.Header().Get("X-Latin"))
	}
}
