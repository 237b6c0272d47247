package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawAnswer is one response read off a raw connection.
type rawAnswer struct {
	code int
	body string
}

// rawExchange writes raw on a new connection (then, with halfClose, ends
// its sending side) and reads answers until the server closes the
// connection or wait passes; closed says the server closed it, after how
// long.
func rawExchange(t *testing.T, addr, raw string, halfClose bool, wait time.Duration) (answers []rawAnswer, closed bool, after time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetDeadline(start.Add(wait))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			return answers, !timedOut, time.Since(start)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers = append(answers, rawAnswer{resp.StatusCode, string(b)})
	}
}

// TestServeHTTPRules sends each of the front's HTTP rules (README, "HTTP
// rules") to the real binary on a raw connection: refused requests get 400
// and a closed connection and never reach an app; normalised ones reach
// the right tenant with the normalised values.
func TestServeHTTPRules(t *testing.T) {
	p := startServe(t, copyTenants(t, "front", "catchall", "limits"))
	for _, host := range []string{"victim.test", "limits.test"} {
		p.waitFor200(t, host+" serving", host, "http://"+p.addr+"/", 60*time.Second)
	}
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: victim.test\r\n\r\n"
	refused := []struct{ name, raw string }{
		{"Content-Length and chunked", "POST / HTTP/1.1\r\nHost: victim.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: victim.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc" + smuggled},
		{"folded Transfer-Encoding", "POST / HTTP/1.1\r\nHost: victim.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"bare LF line endings", "GET / HTTP/1.1\nHost: victim.test\n\n" + smuggled},
		{"two equal Content-Length", "POST / HTTP/1.1\r\nHost: victim.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na" + smuggled},
		{"two differing Content-Length", "POST / HTTP/1.1\r\nHost: victim.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
		{"two Content-Type", "GET / HTTP/1.1\r\nHost: victim.test\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n"},
		{"BEL in a header value", "GET / HTTP/1.1\r\nHost: victim.test\r\nX-Value: a\x07b\r\n\r\n"},
		{"DEL in a header value", "GET / HTTP/1.1\r\nHost: victim.test\r\nX-Value: a\x7fb\r\n\r\n"},
		{"NUL in a header value", "GET / HTTP/1.1\r\nHost: victim.test\r\nX-Value: a\x00b\r\n\r\n"},
		{"CR in a header value", "GET / HTTP/1.1\r\nHost: victim.test\r\nX-Value: a\rb\r\n\r\n"},
		{"authority-form target", "GET example.com:443 HTTP/1.1\r\nHost: victim.test\r\n\r\n"},
		{"asterisk-form target with GET", "GET * HTTP/1.1\r\nHost: victim.test\r\n\r\n"},
		{"Host with invalid characters", "GET / HTTP/1.1\r\nHost: victim!.test\r\n\r\n"},
		{"Host with an empty label", "GET / HTTP/1.1\r\nHost: victim..test\r\n\r\n"},
		{"chunked body with trailer fields", "POST / HTTP/1.1\r\nHost: limits.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Trailer: y\r\n\r\n"},
	}
	for _, tc := range refused {
		answers, closed, _ := rawExchange(t, p.addr, tc.raw, false, 10*time.Second)
		if len(answers) != 1 || answers[0].code != 400 || !closed {
			t.Errorf("%s: answers %v, closed %v; want one 400, then the connection closed", tc.name, answers, closed)
		}
	}
	if log := p.access.String(); strings.Contains(log, "/smuggled") {
		t.Errorf("a smuggled request was served:\n%s", log)
	}

	// Normalised, then routed.
	for _, tc := range []struct{ name, raw, want string }{
		{"Host with a trailing dot", "GET /a HTTP/1.1\r\nHost: Victim.Test.\r\n\r\n", "front|/a||victim.test|"},
		{"Host with a trailing dot and a port", "GET /a HTTP/1.1\r\nHost: victim.test.:8000\r\n\r\n", "front|/a||victim.test:8000|"},
		{"fragment after the query", "GET /p?page=1#posts HTTP/1.1\r\nHost: victim.test\r\n\r\n", "front|/p|page=1|victim.test|"},
		{"fragment after the path", "GET /p#top HTTP/1.1\r\nHost: victim.test\r\n\r\n", "front|/p||victim.test|"},
		{"absolute-form target", "GET http://victim.test/abs?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", "front|/abs|x=1|victim.test|"},
		{"obs-text in a value", "GET / HTTP/1.1\r\nHost: victim.test\r\nX-Value: caf\xe9\r\n\r\n", "front|/||victim.test|caf\xe9"},
		{"unknown host to the catch-all", "GET /c HTTP/1.1\r\nHost: other.test\r\n\r\n", "catchall|/c||other.test|"},
	} {
		answers, _, _ := rawExchange(t, p.addr, tc.raw, true, 10*time.Second)
		if len(answers) != 1 || answers[0].code != 200 || answers[0].body != tc.want {
			t.Errorf("%s: %v, want one 200 %q", tc.name, answers, tc.want)
		}
	}

	// "OPTIONS *" is the front's: 200, no body, and the connection stays.
	answers, _, _ := rawExchange(t, p.addr, "OPTIONS * HTTP/1.1\r\nHost: victim.test\r\n\r\nGET /next HTTP/1.1\r\nHost: victim.test\r\n\r\n", true, 10*time.Second)
	if len(answers) != 2 || answers[0].code != 200 || answers[0].body != "" || answers[1].body != "front|/next||victim.test|" {
		t.Errorf("OPTIONS * then GET: %v; want 200 with no body, then the GET served", answers)
	}

	// A body cut short by the client: its error (400), and a log line that
	// says so.
	answers, _, _ = rawExchange(t, p.addr, "POST / HTTP/1.1\r\nHost: limits.test\r\nContent-Length: 50\r\n\r\n0123456789", true, 10*time.Second)
	if len(answers) != 1 || answers[0].code != 400 {
		t.Errorf("body shorter than its Content-Length: %v, want one 400", answers)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.logs.String(), "the client sent 10 bytes of the 50 its Content-Length declared"); {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the short body:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeStalledBody: a client that declares a body, sends 10 bytes and
// stalls loses its connection at its tenant's request_timeout (1 s for
// limits.test), not at the idle timeout; before, the connection stayed
// open past both.
func TestServeStalledBody(t *testing.T) {
	p := startServe(t, copyTenants(t, "limits"), "--idle-timeout", "30s")
	p.waitFor200(t, "limits tenant serving", "limits.test", "http://"+p.addr+"/", 60*time.Second)
	for _, tc := range []struct {
		name, path, length string
		code               int
	}{
		{"the app reads the body", "/", "90", 504},
		{"the app does not read it", "/unread", "90", 200},
		{"over max_body_bytes", "/", "1000", 413},
	} {
		answers, closed, after := rawExchange(t, p.addr, "POST "+tc.path+" HTTP/1.1\r\nHost: limits.test\r\nContent-Length: "+tc.length+"\r\n\r\n0123456789", false, 20*time.Second)
		t.Logf("%s: %v, closed after %v", tc.name, answers, after)
		if !closed || after > 5*time.Second {
			t.Errorf("%s: connection closed %v after %v; want closed within 5 s (request_timeout 1 s)", tc.name, closed, after)
		}
		if len(answers) != 1 || answers[0].code != tc.code {
			t.Errorf("%s: %v, want one %d", tc.name, answers, tc.code)
		}
	}
}

// TestServeConnectionCaps: past --max-connections-per-ip a connection is
// accepted and closed at once, unanswered; closing one frees its place.
// (The client, on loopback, is not a trusted proxy here: see
// TestServeConnectionCapsSpareProxy.)
func TestServeConnectionCaps(t *testing.T) {
	p := startServe(t, copyTenants(t, "limits"), "--max-connections-per-ip", "2", "--max-connections", "3", "--forwarded-allow-ips", "192.0.2.1")
	// The tenant's first instance is up before the connections are timed.
	p.waitFor200(t, "limits tenant", "limits.test", "http://"+p.addr+"/sleep?0", time.Minute)
	http.DefaultClient.CloseIdleConnections()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// answered reports whether a GET on c is answered (false: closed).
	answered := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /sleep?0 HTTP/1.1\r\nHost: limits.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return true
	}
	// The readiness probe's connection may take a moment to be counted
	// closed: poll until two connections within the cap are answered.
	first, second := dial(), dial()
	for deadline := time.Now().Add(10 * time.Second); !answered(first) || !answered(second); first, second = dial(), dial() {
		first.Close()
		second.Close()
		if time.Now().After(deadline) {
			t.Fatalf("connections within the cap are not answered; log:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	third := dial()
	start := time.Now()
	if answered(third) {
		t.Fatal("a third connection from one address was answered; the cap is 2")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the connection past the cap was closed after %v; want at once", d)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.logs.String(), "max_connections_per_ip"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no log line about the cap:\n%s", p.logs.String())
			break
		}
	}
	first.Close()
	for deadline := time.Now().Add(10 * time.Second); !answered(dial()); {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's place was not given back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeConnectionCapsSpareProxy: by default loopback is a trusted
// proxy (--forwarded-allow-ips 127.0.0.1 and ::1), and the per-address cap
// does not count its connections: nginx on the same host, or a load
// generator, may open more than the cap.
func TestServeConnectionCapsSpareProxy(t *testing.T) {
	p := startServe(t, copyTenants(t, "limits"), "--max-connections-per-ip", "1")
	p.waitFor200(t, "limits tenant", "limits.test", "http://"+p.addr+"/sleep?0", time.Minute)
	var conns []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /sleep?0 HTTP/1.1\r\nHost: limits.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d of 4 from loopback (a trusted proxy) was not answered with a cap of 1 per address: %v\nlog:\n%s", i+1, err, p.logs.String())
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
}
