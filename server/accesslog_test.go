package server_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// TestAccessLogFormat: gunicorn's default access_log_format, then the
// tenant and the seconds; quotes a client sends cannot end a field.
func TestAccessLogFormat(t *testing.T) {
	var out strings.Builder
	log := server.NewAccessLog(&out)
	h := log.Handler("shop", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		w.Write([]byte("hello"))
	}))
	req := httptest.NewRequest("POST", "/cart?x=1", nil)
	req.RemoteAddr = "192.0.2.1:5555"
	req.Header.Set("User-Agent", `evil" 200 0 "-`)
	req.SetBasicAuth("ann", "pw")
	h.ServeHTTP(httptest.NewRecorder(), req)
	log.Log(httptest.NewRequest("GET", "/", nil), "203.0.113.9:0", "-", 404, 19, 1500*time.Microsecond)

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^192\.0\.2\.1 - ann \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "POST /cart\?x=1 HTTP/1\.1" 201 5 "-" "evil\\" 200 0 \\"-" shop \d+\.\d{6}$`),
		regexp.MustCompile(`^203\.0\.113\.9 - - \[[^]]+\] "GET / HTTP/1\.1" 404 19 "-" "-" - 0\.001500$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", out.String())
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d: %q does not match %s", i, lines[i], re)
		}
	}
	server.NewAccessLog(nil).Log(req, "", "x", 200, 0, 0) // nil writes nothing, no panic
}
