package server

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"victim.test", "victim.test", true},
		{"Victim.Test.", "victim.test", true},
		{"victim.test.:8000", "victim.test:8000", true},
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"[::1]:8000", "[::1]:8000", true},
		{"[::1]", "[::1]", true},
		{"my_host-1.example", "my_host-1.example", true},
		{"", "", true},
		{"victim.test..", "", false},
		{".", "", false},
		{"a..b", "", false},
		{"vic tim", "", false},
		{"a/b", "", false},
		{"a%2eb", "", false},
		{"a:b", "", false},
		{"a:", "", false},
		{"a:123456", "", false},
		{"[127.0.0.1]", "", false},
		{"[::1", "", false},
		{"[::1]x", "", false},
		{"a@b", "", false},
		{strings.Repeat("a", 64) + ".test", "", false},
	} {
		got, ok := NormalizeHost(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// checkRaw parses a raw request as net/http's server does and runs
// CheckRequest on it.
func checkRaw(t *testing.T, raw string) (*http.Request, *httptest.ResponseRecorder, bool) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	w := httptest.NewRecorder()
	return r, w, CheckRequest(w, r)
}

func TestCheckRequest(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		status    int // 0: passes
	}{
		{"origin form", "GET /a?b=1 HTTP/1.1\r\nHost: h\r\n\r\n", 0},
		{"absolute form", "GET http://h/a HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"authority form", "GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"absolute form, other scheme", "GET ftp://h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"absolute form with userinfo", "GET http://u:p@h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk form, GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk form, OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 200},
		{"two Content-Type", "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400},
		{"obs-text in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: caf\xe9\r\n\r\n", 0},
		{"Host with a trailing dot", "GET / HTTP/1.1\r\nHost: Victim.Test.\r\n\r\n", 0},
		{"Host with a percent sign", "GET / HTTP/1.1\r\nHost: a%41\r\n\r\n", 400},
		{"request line over 4094 bytes", "GET /" + strings.Repeat("a", 4094) + " HTTP/1.1\r\nHost: h\r\n\r\n", 414},
	} {
		_, w, ok := checkRaw(t, tc.raw)
		if ok != (tc.status == 0) || tc.status != 0 && w.Code != tc.status {
			t.Errorf("%s: passes %v, status %d; want status %d (0: passes)", tc.name, ok, w.Code, tc.status)
		}
		if tc.status == 400 && w.Header().Get("Connection") != "close" {
			t.Errorf("%s: 400 without Connection: close", tc.name)
		}
	}
}

// Control characters net/http refuses today are refused by CheckRequest
// too, should net/http ever let them through.
func TestCheckRequestControlCharacters(t *testing.T) {
	for _, c := range []byte{0x00, 0x07, '\r', '\n', 0x1f, 0x7f} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Value", "a"+string(c)+"b")
		w := httptest.NewRecorder()
		if CheckRequest(w, r) || w.Code != 400 {
			t.Errorf("header value with %#x: passes or %d, want 400", c, w.Code)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Value", "a\tb")
	if !CheckRequest(httptest.NewRecorder(), r) {
		t.Error("a tab in a value is refused")
	}
}

func TestCheckRequestNormalises(t *testing.T) {
	r, _, ok := checkRaw(t, "GET /p?page=1#posts HTTP/1.1\r\nHost: Victim.Test.:8000\r\n\r\n")
	if !ok || r.URL.RawQuery != "page=1" || r.URL.Path != "/p" || r.Host != "victim.test:8000" {
		t.Errorf("passes %v, query %q, path %q, host %q; want page=1, /p, victim.test:8000", ok, r.URL.RawQuery, r.URL.Path, r.Host)
	}
	r, _, ok = checkRaw(t, "GET /a%20b#frag HTTP/1.1\r\nHost: h\r\n\r\n")
	if !ok || r.URL.Path != "/a b" || r.URL.RawQuery != "" {
		t.Errorf("passes %v, path %q, query %q; want /a b and no query", ok, r.URL.Path, r.URL.RawQuery)
	}
	r, _, ok = checkRaw(t, "GET http://h HTTP/1.1\r\nHost: x\r\n\r\n")
	if !ok || r.URL.Path != "/" || r.Host != "h" {
		t.Errorf("absolute form without a path: passes %v, path %q, host %q; want / and h", ok, r.URL.Path, r.Host)
	}
}

// pieceConn is a net.Conn whose reads return at most n bytes of data, so
// that framing is followed across reads.
type pieceConn struct {
	net.Conn
	r *bytes.Reader
	n int
}

func (c *pieceConn) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func TestFramingConn(t *testing.T) {
	get := "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		delivered string // "": all of raw; else this and at most part of the next line
		problem   string // substring; "": none
	}{
		{"two requests", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + get, "", ""},
		{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n" + get, "", ""},
		{"empty lines after a body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\na\r\n" + get, "", ""},
		{"HTTP/1.0 with Content-Length", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nab" + get, "", ""},
		{"Content-Length and chunked",
			"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get,
			"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Transfer-Encoding and Content-Length"},
		{"Transfer-Encoding in HTTP/1.0",
			"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"},
		{"folded Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", "obs-fold"},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n" + get, "GET / HTTP/1.1\nHost: h\n\n", "bare LF"},
		{"bare LF in the second request", get + "GET / HTTP/1.1\r\nHost: h\n\r\n", "", "bare LF"},
		{"two equal Content-Length",
			"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
			"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "more than one Content-Length"},
		{"chunk size with a bare LF",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", "chunk-size"},
		{"chunk data too long",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab", "not followed by CRLF"},
		{"trailer fields",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n\r\n" + get,
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", "trailer"},
		{"unsupported Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported"},
	} {
		for _, piece := range []int{1, 7, 4096} {
			fc := &framingConn{Conn: &pieceConn{r: bytes.NewReader([]byte(tc.raw)), n: piece}}
			got, err := io.ReadAll(fc)
			want := tc.delivered
			if want == "" {
				want = tc.raw
			}
			// Of a refused line, what came in earlier reads was passed
			// on, never its line end: net/http then reads end of file.
			if rest, ok := strings.CutPrefix(string(got), want); err != nil || !ok || strings.Contains(rest, "\n") {
				t.Errorf("%s (reads of %d): delivered %q, %v; want %q and at most part of a line", tc.name, piece, got, err, want)
			}
			if p := fc.Problem(); tc.problem == "" && p != "" || !strings.Contains(p, tc.problem) {
				t.Errorf("%s (reads of %d): problem %q, want %q", tc.name, piece, p, tc.problem)
			}
		}
	}
}

// frontServer serves h as the front does (FramingListener, ConnContext,
// CheckRequest first) on loopback; it returns the address and how many
// requests reached h.
func frontServer(t *testing.T, limits *ConnLimits) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if limits != nil {
		ln = limits.Listener(ln)
	}
	var served atomic.Int64
	hs := &http.Server{
		ConnContext: ConnContext, DisableGeneralOptionsHandler: true,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !CheckRequest(w, r) {
				return
			}
			served.Add(1)
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, r.URL.Path+" "+string(b))
		}),
	}
	go hs.Serve(FramingListener(ln, nil))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), &served
}

// exchange sends raw on a new connection and reads every answer until the
// server closes it (or 5 s pass).
func exchange(t *testing.T, addr, raw string) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses, bodies, err == io.EOF || err == io.ErrUnexpectedEOF
		}
		b, _ := io.ReadAll(resp.Body)
		statuses, bodies = append(statuses, resp.StatusCode), append(bodies, string(b))
	}
}

// The smuggling attempt of issue 16 against a real net/http server: the
// request is refused and the bytes after its chunked body never become a
// second request; a plain keep-alive pair still gets two answers.
func TestFrontRefusesSmuggling(t *testing.T) {
	addr, served := frontServer(t, nil)
	statuses, _, closed := exchange(t, addr, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
	if len(statuses) != 1 || statuses[0] != 400 || !closed || served.Load() != 0 {
		t.Errorf("CL+TE: statuses %v, closed %v, served %d; want [400], closed, none served", statuses, closed, served.Load())
	}
	statuses, bodies, _ := exchange(t, addr, "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if len(statuses) != 2 || statuses[0] != 200 || bodies[0] != "/a abc" || bodies[1] != "/b " {
		t.Errorf("chunked then GET: %v %q; want two 200s", statuses, bodies)
	}
	statuses, bodies, _ = exchange(t, addr, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if len(statuses) != 2 || statuses[0] != 200 || bodies[0] != "" || statuses[1] != 200 || bodies[1] != "/after " {
		t.Errorf("OPTIONS * then GET: %v %q; want 200 (empty) then 200", statuses, bodies)
	}
}

// dialFrom connects to the front at addr from the local address local
// ("" for any), with a deadline for the whole test.
func dialFrom(t *testing.T, addr, local string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

// answered reports whether a request on c is answered 200 (false: the
// connection was closed instead).
func answered(c net.Conn, br *bufio.Reader) bool {
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false
	}
	io.ReadAll(resp.Body)
	return resp.StatusCode == 200
}

// ConnLimits: past a cap a connection is closed at once, unanswered; a
// closed connection frees its place.
func TestConnLimits(t *testing.T) {
	limits := &ConnLimits{Max: 3, MaxPerIP: 2}
	addr, _ := frontServer(t, limits)
	dial := func() (net.Conn, *bufio.Reader) { return dialFrom(t, addr, "") }
	c1, b1 := dial()
	c2, b2 := dial()
	if !answered(c1, b1) || !answered(c2, b2) {
		t.Fatal("connections within the cap are not answered")
	}
	c3, b3 := dial()
	if answered(c3, b3) {
		t.Fatal("a third connection from one address is answered; the cap per address is 2")
	}
	if limits.Refused() != 1 {
		t.Errorf("refused %d, want 1", limits.Refused())
	}
	c1.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, br := dial()
		if answered(c, br) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's place was not given back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	limits.mu.Lock()
	open := limits.open
	limits.mu.Unlock()
	if open != 2 {
		t.Errorf("%d open connections counted, want 2", open)
	}
	// The total cap: one connection at most.
	limits2 := &ConnLimits{Max: 1}
	addr, _ = frontServer(t, limits2)
	c4, b4 := dial()
	c5, b5 := dial()
	if !answered(c4, b4) || answered(c5, b5) {
		t.Error("total cap of 1: want the first connection answered, the second closed")
	}
}

// Over TLS the framing checks read the decrypted stream, and CheckRequest
// gives the handler r.TLS back (wsgi.url_scheme https).
func TestFramingListenerTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"h"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		ConnContext: ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if CheckRequest(w, r) {
				io.WriteString(w, strconv.FormatBool(r.TLS != nil))
			}
		}),
	}
	go hs.Serve(FramingListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { hs.Close() })
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "true" || c.ConnectionState().NegotiatedProtocol != "http/1.1" {
		t.Errorf("r.TLS set: %q; protocol %q, want http/1.1", b, c.ConnectionState().NegotiatedProtocol)
	}
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 400 {
		t.Errorf("Content-Length and chunked over TLS: %v, want 400", err)
	}
}

// The per-address cap spares the trusted proxies (ExemptIPs): a front
// proxy on 127.0.0.1 opens more connections than MaxPerIP and every one
// is answered, while another address (127.0.0.2) is still capped, and the
// total cap still counts the proxy's connections.
func TestConnLimitsExemptProxy(t *testing.T) {
	limits := &ConnLimits{Max: 6, MaxPerIP: 2, ExemptIPs: []string{"127.0.0.1", "::1"}}
	addr, _ := frontServer(t, limits)
	for i := 0; i < 4; i++ {
		if c, br := dialFrom(t, addr, "127.0.0.1"); !answered(c, br) {
			t.Fatalf("connection %d from the trusted proxy was refused; the cap per address is 2 and the proxy is exempt", i+1)
		}
	}
	c1, b1 := dialFrom(t, addr, "127.0.0.2")
	c2, b2 := dialFrom(t, addr, "127.0.0.2")
	if !answered(c1, b1) || !answered(c2, b2) {
		t.Fatal("two connections from 127.0.0.2 (within its cap) were not answered")
	}
	if c, br := dialFrom(t, addr, "127.0.0.2"); answered(c, br) {
		t.Fatal("a third connection from 127.0.0.2 was answered; it is not exempt and the cap per address is 2")
	}
	// 4 from the proxy + 2 = 6 = Max: the proxy too is refused now.
	if c, br := dialFrom(t, addr, "127.0.0.1"); answered(c, br) {
		t.Fatal("the proxy's connection past the total cap of 6 was answered")
	}
	if got := limits.Refused(); got != 2 {
		t.Errorf("refused %d, want 2", got)
	}
	limits.mu.Lock()
	_, counted := limits.perIP["127.0.0.1"]
	limits.mu.Unlock()
	if counted {
		t.Error("the exempt proxy's connections were counted per address")
	}
}
