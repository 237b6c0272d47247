package pool_test

import (
	"bufio"
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
)

// cgiKeys are the keys BuildEnviron always writes, in its order, before
// one HTTP_* key per other header (ABI.md "request_environ").
var cgiKeys = []string{
	"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
	"SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST",
}

// FuzzBuildEnviron: any request net/http reads becomes an environ that
// request_environ can carry: well formed, every key once, header keys only
// of the HTTP_* form, a numeric CONTENT_LENGTH; or an error, only when a
// value holds NUL. Seeds: testdata/fuzz/FuzzBuildEnviron.
func FuzzBuildEnviron(f *testing.F) {
	f.Add([]byte("GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"), "", "203.0.113.7:4000")
	f.Add([]byte("POST /app/x HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 3\r\nX_Forwarded_For: 1.2.3.4\r\n\r\nabc"), "/app", "[::1]:1")
	f.Add([]byte("GET /%00 HTTP/1.1\r\nHost: h\r\n\r\n"), "", "")
	f.Fuzz(func(t *testing.T, raw []byte, scriptName, remote string) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		info := pool.RequestInfo{ScriptName: scriptName, RemoteAddr: remote}
		env, err := pool.BuildEnviron(nil, r, info)
		if err != nil {
			if !bytes.Contains(raw, []byte{0}) && !bytes.Contains(bytes.ToLower(raw), []byte("%00")) && !strings.Contains(scriptName+remote, "\x00") {
				t.Fatalf("BuildEnviron refused a request without NUL: %v", err)
			}
			return
		}
		if len(env) == 0 || env[len(env)-1] != 0 {
			t.Fatalf("environ does not end in NUL: %q", env)
		}
		fields := strings.Split(string(env[:len(env)-1]), "\x00")
		if len(fields)%2 != 0 {
			t.Fatalf("odd number of fields: %q", fields)
		}
		var keys []string
		seen := map[string]bool{}
		for i := 0; i < len(fields); i += 2 {
			key, value := fields[i], fields[i+1]
			if seen[key] {
				t.Fatalf("key %q twice in %q", key, fields)
			}
			seen[key] = true
			keys = append(keys, key)
			if i/2 >= len(cgiKeys) && (!strings.HasPrefix(key, "HTTP_") || strings.ContainsAny(key, "-abcdefghijklmnopqrstuvwxyz")) {
				t.Fatalf("header key %q", key)
			}
			if key == "CONTENT_LENGTH" && strings.Trim(value, "0123456789") != "" {
				t.Fatalf("CONTENT_LENGTH %q", value)
			}
		}
		if len(keys) < len(cgiKeys) || !slices.Equal(keys[:len(cgiKeys)], cgiKeys) {
			t.Fatalf("keys %q", keys)
		}
	})
}
