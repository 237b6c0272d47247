package sandbox_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

func TestInstanceHello(t *testing.T) {
	for _, app := range []string{"hello:hello", "hello:hello_validated"} {
		t.Run(app, func(t *testing.T) {
			inst, logs := newInstance(t, app)
			for i := 0; i < 3; i++ { // the same instance serves request after request
				rec, o := do(inst, httptest.NewRequest("GET", "/w%C3%B6rld", nil), logs)
				if o.Err != nil || o.Result != hostabi.HandleOK {
					t.Fatalf("outcome %+v, log:\n%s", o, logs)
				}
				if rec.Code != 200 || rec.Body.String() != "Hello, /w\xc3\xb6rld\n" || rec.Header().Get("Content-Length") != "15" {
					t.Fatalf("got %d %q %v", rec.Code, rec.Body.String(), rec.Header())
				}
			}
		})
	}
}

func TestInstanceEnvironAndBody(t *testing.T) {
	inst, logs := newInstance(t, "hello:echo_validated")
	req := httptest.NewRequest("POST", "/p/a%2Fb?x=1&y=%20", strings.NewReader("payload"))
	req.Header.Set("Content-Type", "text/x-test")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	req.Header.Set("X_Spoof", "dropped")
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{ScriptName: "/p"}, logs.log)
	if o.Err != nil || o.Result != hostabi.HandleOK {
		t.Fatalf("outcome %+v, log:\n%s", o, logs)
	}
	want := "REQUEST_METHOD=POST\nSCRIPT_NAME=/p\nPATH_INFO=/a/b\nQUERY_STRING=x=1&y=%20\n" +
		"CONTENT_TYPE=text/x-test\nCONTENT_LENGTH=7\nSERVER_PROTOCOL=HTTP/1.1\n" +
		"HTTP_X_MULTI=one, two\nHTTP_COOKIE=a=1; b=2\nwsgi.url_scheme=http\nbody=payload"
	if got := rec.Body.String(); got != want {
		t.Fatalf("body:\n%s\nwant:\n%s", got, want)
	}
}

func TestInstanceKeepsStateAcrossRequests(t *testing.T) {
	inst, logs := newInstance(t, "hello:counter")
	var last string
	for i := 0; i < 3; i++ {
		rec, _ := do(inst, httptest.NewRequest("GET", "/", nil), logs)
		last = rec.Body.String()
	}
	if last != "3" {
		t.Fatalf("third request saw counter %q, want 3", last)
	}
}

func TestInstanceFailures(t *testing.T) {
	t.Run("exception is 500, instance reusable", func(t *testing.T) {
		inst, logs := newInstance(t, "hello:crash")
		rec, o := do(inst, httptest.NewRequest("GET", "/", nil), logs)
		if rec.Code != 500 || o.Result != hostabi.HandleAppError || !o.Reusable() || inst.Broken() {
			t.Fatalf("code %d outcome %+v", rec.Code, o)
		}
		if strings.Contains(rec.Body.String(), "tenant bug") {
			t.Fatal("traceback leaked to the client")
		}
		if l := logs.String(); !strings.Contains(l, "RuntimeError: tenant bug") || !strings.Contains(l, "about to fail") {
			t.Fatalf("log lacks traceback or wsgi.errors line:\n%s", l)
		}
	})
	t.Run("sys.exit is 500, instance replaced", func(t *testing.T) {
		inst, logs := newInstance(t, "hello:exits")
		rec, o := do(inst, httptest.NewRequest("GET", "/", nil), logs)
		if rec.Code != 500 || o.Result != hostabi.HandleReplace || o.Reusable() || !inst.Broken() {
			t.Fatalf("code %d outcome %+v", rec.Code, o)
		}
	})
	t.Run("CRLF in header is 500", func(t *testing.T) {
		inst, logs := newInstance(t, "hello:bad_header")
		rec, _ := do(inst, httptest.NewRequest("GET", "/", nil), logs)
		if rec.Code != 500 || rec.Header().Get("Injected") != "" || !strings.Contains(logs.String(), "CR, LF or NUL") {
			t.Fatalf("code %d header %v log:\n%s", rec.Code, rec.Header(), logs)
		}
	})
	t.Run("missing module fails init with traceback", func(t *testing.T) {
		_, err := testEngine(t).NewInstance(context.Background(), sandbox.AppConfig{App: "nosuchmodule:app", Dir: "testdata/apps"})
		if err == nil || !strings.Contains(err.Error(), "ModuleNotFoundError") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestInstanceEnvironEachRequest: an instance's requests in turn, each with
// other variables, other lengths and other values at the same places, each
// see their own environ and nothing of the one before.
func TestInstanceEnvironEachRequest(t *testing.T) {
	inst, logs := newInstance(t, "hello:echo_validated")
	for _, c := range []struct{ method, target, multi, want string }{
		{"GET", "/a?q=1", "one", "REQUEST_METHOD=GET\nSCRIPT_NAME=\nPATH_INFO=/a\nQUERY_STRING=q=1\n" +
			"CONTENT_TYPE=\nCONTENT_LENGTH=\nSERVER_PROTOCOL=HTTP/1.1\nHTTP_X_MULTI=one\nHTTP_COOKIE=None\nwsgi.url_scheme=http\nbody="},
		{"POST", "/bb", "", "REQUEST_METHOD=POST\nSCRIPT_NAME=\nPATH_INFO=/bb\nQUERY_STRING=\n" +
			"CONTENT_TYPE=\nCONTENT_LENGTH=4\nSERVER_PROTOCOL=HTTP/1.1\nHTTP_X_MULTI=None\nHTTP_COOKIE=None\nwsgi.url_scheme=http\nbody=data"},
		{"GET", "/a?q=2", strings.Repeat("v", 100), "REQUEST_METHOD=GET\nSCRIPT_NAME=\nPATH_INFO=/a\nQUERY_STRING=q=2\n" +
			"CONTENT_TYPE=\nCONTENT_LENGTH=\nSERVER_PROTOCOL=HTTP/1.1\nHTTP_X_MULTI=" + strings.Repeat("v", 100) + "\nHTTP_COOKIE=None\nwsgi.url_scheme=http\nbody="},
		{"GET", "/a?q=1", "one", "REQUEST_METHOD=GET\nSCRIPT_NAME=\nPATH_INFO=/a\nQUERY_STRING=q=1\n" +
			"CONTENT_TYPE=\nCONTENT_LENGTH=\nSERVER_PROTOCOL=HTTP/1.1\nHTTP_X_MULTI=one\nHTTP_COOKIE=None\nwsgi.url_scheme=http\nbody="},
	} {
		var body io.Reader
		if c.method == "POST" {
			body = strings.NewReader("data")
		}
		req := httptest.NewRequest(c.method, c.target, body)
		if c.multi != "" {
			req.Header.Set("X-Multi", c.multi)
		}
		rec, o := do(inst, req, logs)
		if o.Err != nil || rec.Body.String() != c.want {
			t.Fatalf("%s %s: outcome %+v, body:\n%s\nwant:\n%s\nlog:\n%s", c.method, c.target, o, rec.Body.String(), c.want, logs)
		}
	}
}

// settleRecorder is a Responder that notes, at each Write, how many
// instances its engine serves, and counts Settle calls.
type settleRecorder struct {
	engine        *sandbox.Engine
	body          []byte
	servingAtBody int
	settled       int
}

func (r *settleRecorder) Start(int, []hostabi.Header) error { return nil }
func (r *settleRecorder) Write(p []byte) error {
	r.body = append(r.body, p...)
	r.servingAtBody = r.engine.Serving()
	return nil
}
func (r *settleRecorder) Settle() { r.settled++ }

// TestServeSettlesAtSleepAndCountsServing: Engine.Serving counts the
// instance while its guest call runs and not after; a guest that sleeps
// after its last chunk has the response settled first (ABI.md
// "response_write"), inside the call.
func TestServeSettlesAtSleepAndCountsServing(t *testing.T) {
	inst, logs := newInstance(t, "streams:teardown")
	e := testEngine(t)
	env, err := hostabi.EncodeEnviron(nil, "REQUEST_METHOD", "GET", "PATH_INFO", "/",
		"QUERY_STRING", "mode=sleep&seconds=0.05", "SERVER_PROTOCOL", "HTTP/1.1")
	if err != nil {
		t.Fatal(err)
	}
	resp := &settleRecorder{engine: e}
	x := &hostabi.Exchange{Environ: env, Response: resp}
	o := inst.Serve(context.Background(), x, logs.log)
	if o.Err != nil || o.Result != hostabi.HandleOK || len(resp.body) != 100 {
		t.Fatalf("outcome %+v, %d bytes; log:\n%s", o, len(resp.body), logs)
	}
	if resp.servingAtBody != 1 || e.Serving() != 0 {
		t.Fatalf("Serving() = %d during the call, %d after; want 1 and 0", resp.servingAtBody, e.Serving())
	}
	if resp.settled == 0 {
		t.Fatal("the app slept after its last chunk, and the response was not settled before")
	}
}
