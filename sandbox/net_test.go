package sandbox_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// loopDialer dials 127.0.0.1 whatever host the guest named (so that a
// certificate's name can be tested), and trusts roots.
type loopDialer struct {
	roots *x509.CertPool
	dials atomic.Int64
}

func (d *loopDialer) Dial(ctx context.Context, host string, port int) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
}

func (d *loopDialer) RootCAs() *x509.CertPool { return d.roots }

// listener accepts connections and runs serve on each; it records how
// many it accepted. Closed at the end of the test.
type listener struct {
	net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func listen(t *testing.T, serve func(net.Conn)) (*listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{Listener: ln}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); l.wg.Wait() })
	return l, ln.Addr().(*net.TCPAddr).Port
}

// echoLines answers each line with itself.
func echoLines(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		c.Write([]byte(line))
	}
}

func netInstance(t *testing.T, cfg sandbox.AppConfig) (*sandbox.Instance, *logLines) {
	t.Helper()
	logs := &logLines{}
	cfg.App, cfg.Dir, cfg.Log = "net:app", "testdata/apps", logs.log
	inst, err := testEngine(t).NewInstance(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewInstance: %v", err)
	}
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst, logs
}

// scenario serves GET path on inst within timeout and returns the body.
func scenario(t *testing.T, inst *sandbox.Instance, logs *logLines, path string, timeout time.Duration) (string, pool.Outcome, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, httptest.NewRequest("GET", path, nil).WithContext(ctx), pool.RequestInfo{}, logs.log)
	return rec.Body.String(), o, rec.Code
}

func mustScenario(t *testing.T, inst *sandbox.Instance, logs *logLines, path string) string {
	t.Helper()
	body, o, code := scenario(t, inst, logs, path, 20*time.Second)
	if o.Err != nil || code != 200 {
		t.Fatalf("GET %s: %d %+v\n%s\nlog:\n%s", path, code, o, body, logs)
	}
	return body
}

func wantLines(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("body lacks %q:\n%s", w, body)
		}
	}
}

func TestOutboundSocket(t *testing.T) {
	_, port := listen(t, echoLines)
	d := &loopDialer{}
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: d})
	t.Run("echo", func(t *testing.T) {
		body := mustScenario(t, inst, logs, fmt.Sprintf("/echo?port=%d", port))
		wantLines(t, body, fmt.Sprintf("peer=127.0.0.1:%d", port), "local_port_set=True", "nodelay=1",
			"line1=hello", "line2=world", "eof=b''", "fileno_after_close=-1")
	})
	t.Run("readiness", func(t *testing.T) {
		body := mustScenario(t, inst, logs, fmt.Sprintf("/readiness?port=%d", port))
		wantLines(t, body, "connect_ex=0", "before=0", "writable=1", "select=1", "poll=[(True, True)]",
			"selector=PollSelector 1 data", "got=ping", "nonblocking=BlockingIOError")
	})
	t.Run("unsupported", func(t *testing.T) {
		body := mustScenario(t, inst, logs, "/unsupported")
		wantLines(t, body, "bind=PermissionError", "udp=OSError", "gai=('db.internal', 5432)", "gai6=('::1', 443, 0, 0)")
	})
	t.Run("refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		closed := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		body := mustScenario(t, inst, logs, fmt.Sprintf("/refused?port=%d", closed))
		wantLines(t, body, "ConnectionRefusedError")
	})
	if n := inst.OpenConnections(); n != 0 {
		t.Errorf("%d connections left open after the scenarios closed theirs", n)
	}
}

func TestOutboundTimeouts(t *testing.T) {
	silent := func(c net.Conn) { io.Copy(io.Discard, c) }
	_, port := listen(t, silent)
	d := &loopDialer{}
	t.Run("settimeout", func(t *testing.T) {
		inst, logs := netInstance(t, sandbox.AppConfig{Outbound: d})
		start := time.Now()
		body := mustScenario(t, inst, logs, fmt.Sprintf("/timeout?port=%d", port))
		wantLines(t, body, "timeout=TimeoutError timed out gettimeout=0.2")
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %v", el)
		}
	})
	t.Run("request deadline", func(t *testing.T) {
		inst, logs := netInstance(t, sandbox.AppConfig{Outbound: d})
		const deadline = 300 * time.Millisecond
		start := time.Now()
		_, o, code := scenario(t, inst, logs, fmt.Sprintf("/hang?port=%d", port), deadline)
		late := time.Since(start) - deadline
		if !errors.Is(o.Err, sandbox.ErrDeadline) || code != 504 {
			t.Fatalf("outcome %+v status %d, want ErrDeadline and 504", o, code)
		}
		if late > 2*time.Second {
			t.Errorf("ended %v after the deadline", late)
		}
		if n := inst.OpenConnections(); n != 0 {
			t.Errorf("%d connections open after the instance was dropped", n)
		}
	})
}

func TestOutboundConnectionCap(t *testing.T) {
	_, port := listen(t, echoLines)
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: &loopDialer{}, MaxConnections: 3})
	body := mustScenario(t, inst, logs, fmt.Sprintf("/cap?port=%d", port))
	wantLines(t, body, "opened=3 error=OSError: [Errno 33] too many open connections (this instance may hold 3)", "after_close=ok")
}

func TestOutboundDenied(t *testing.T) {
	l, port := listen(t, echoLines)
	inst, logs := netInstance(t, sandbox.AppConfig{}) // nil Outbound: outbound.Deny
	body := mustScenario(t, inst, logs, fmt.Sprintf("/deny?port=%d", port))
	wantLines(t, body, "PermissionError: [Errno 2] outbound: connection to 127.0.0.1:",
		fmt.Sprintf(`add "127.0.0.1:%d" to [policy] outbound`, port))
	time.Sleep(50 * time.Millisecond)
	if n := l.accepted.Load(); n != 0 {
		t.Errorf("the listener accepted %d connections; a refusal must send nothing", n)
	}
	var _ outbound.Dialer = outbound.Deny{}
}

func TestOutboundClosedWithInstance(t *testing.T) {
	eof := make(chan struct{}, 1)
	_, port := listen(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		eof <- struct{}{}
	})
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: &loopDialer{}})
	wantLines(t, mustScenario(t, inst, logs, fmt.Sprintf("/keep?port=%d", port)), "kept")
	if n := inst.OpenConnections(); n != 1 {
		t.Fatalf("%d open connections, want the kept one", n)
	}
	inst.Close(context.Background())
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer saw no EOF after the instance closed")
	}
}

// TestOutboundNeverReadingGuest: a server that floods a guest that never
// reads gets the host's bounded buffer and then the kernel's back-pressure.
func TestOutboundNeverReadingGuest(t *testing.T) {
	var written atomic.Int64
	done := make(chan struct{})
	_, port := listen(t, func(c net.Conn) {
		chunk := make([]byte, 64<<10)
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				close(done)
				return
			}
		}
	})
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: &loopDialer{}})
	wantLines(t, mustScenario(t, inst, logs, fmt.Sprintf("/peek_one?port=%d", port)), "selected")
	<-done
	// What the server could write is the kernel's socket buffers plus the
	// host's 16 KiB read-ahead: a few MiB at most, never the stream.
	if w := written.Load(); w > 32<<20 {
		t.Errorf("the server wrote %d bytes to a guest that reads nothing", w)
	}
	t.Logf("server wrote %d bytes before back-pressure stopped it", written.Load())
}

func TestOutboundSnapshotWithOpenConnection(t *testing.T) {
	_, port := listen(t, echoLines)
	cfg := sandbox.AppConfig{App: "net:app", Dir: "testdata/apps", Outbound: &loopDialer{},
		Env: map[string]string{"CONNECT_AT_IMPORT": fmt.Sprint(port)}}
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, err = store.Build(context.Background(), testEngine(t), cfg)
	if err == nil || !strings.Contains(err.Error(), "open outbound connection") {
		t.Fatalf("Build = %v, want a refusal naming the open connection", err)
	}
}

// tlsServer is an httptest TLS server (its certificate names example.com
// and 127.0.0.1) and its CA in PEM.
func tlsServer(t *testing.T) (*httptest.Server, int, string) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls:%s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, srv.Listener.Addr().(*net.TCPAddr).Port, string(ca)
}

func TestOutboundTLS(t *testing.T) {
	srv, port, ca := tlsServer(t)
	trusting := &loopDialer{roots: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: trusting})
	t.Run("verified", func(t *testing.T) {
		body := mustScenario(t, inst, logs, fmt.Sprintf("/tls?port=%d", port))
		wantLines(t, body, "version=TLSv1.3", "cipher=True", "alpn=http/1.1",
			"subject=((('organizationName', 'Acme Co'),),)", "san=(('DNS', 'example.com'), ('DNS', '*.example.com'), ('IP Address', '127.0.0.1'), ('IP Address', '0:0:0:0:0:0:0:1'))", "der=",
			"status=HTTP/1.0 200 OK")
	})
	t.Run("wrong host name", func(t *testing.T) {
		body := mustScenario(t, inst, logs, fmt.Sprintf("/tls?port=%d&host=wrong.example", port))
		wantLines(t, body, "SSLCertVerificationError verify_code=62 [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not valid for 'wrong.example'. (_ssl.c:992)")
	})
	t.Run("cert_none", func(t *testing.T) {
		untrusting, logs := netInstance(t, sandbox.AppConfig{Outbound: &loopDialer{roots: x509.NewCertPool()}})
		body := mustScenario(t, untrusting, logs, fmt.Sprintf("/tls?port=%d&host=wrong.example&mode=none", port))
		wantLines(t, body, "version=TLSv1.3", "subject=None", "status=HTTP/1.0 200 OK")
		body = mustScenario(t, untrusting, logs, fmt.Sprintf("/tls?port=%d", port))
		wantLines(t, body, "SSLCertVerificationError verify_code=18 [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")
	})
	t.Run("cadata", func(t *testing.T) {
		own, logs := netInstance(t, sandbox.AppConfig{Outbound: &loopDialer{roots: x509.NewCertPool()},
			Env: map[string]string{"CA_PEM": ca}})
		body := mustScenario(t, own, logs, fmt.Sprintf("/tls?port=%d&mode=cadata", port))
		wantLines(t, body, "version=TLSv1.3", "status=HTTP/1.0 200 OK")
	})
	t.Run("wrap then connect", func(t *testing.T) {
		body := mustScenario(t, inst, logs, fmt.Sprintf("/wrap_first?port=%d", port))
		wantLines(t, body, "wrap_first=HTTP/1.0 200 OK", "version=TLSv1.3")
	})
	t.Run("server_side", func(t *testing.T) {
		body := mustScenario(t, inst, logs, fmt.Sprintf("/server_side?port=%d", port))
		wantLines(t, body, "ValueError: server-side TLS is not available in the sandbox")
	})
}

func TestOutboundHTTPClients(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plain:%s", r.URL.Path)
	}))
	defer plain.Close()
	srv, tport, _ := tlsServer(t)
	port := plain.Listener.Addr().(*net.TCPAddr).Port
	d := &loopDialer{roots: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: d})
	body := mustScenario(t, inst, logs, fmt.Sprintf("/httpclient?port=%d&tls_port=%d", port, tport))
	wantLines(t, body, "http.client=200 plain:/plain", "reused=200 plain:/again", "urllib=200 plain:/urllib",
		"https=200 tls:/secure", "urllib_https=200 tls:/urllib-tls")
}

// TestOutboundStartTLS: plaintext first, then TLS on the same connection
// (PostgreSQL's SSLRequest), the server's first TLS bytes not eaten.
func TestOutboundStartTLS(t *testing.T) {
	srv, _, _ := tlsServer(t)
	cert := srv.TLS.Certificates[0]
	_, port := listen(t, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "STARTTLS\n" {
			return
		}
		c.Write([]byte("S"))
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		echoLines(tc)
	})
	d := &loopDialer{roots: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: d})
	body := mustScenario(t, inst, logs, fmt.Sprintf("/starttls?port=%d", port))
	wantLines(t, body, "answer=b'S'", "tls=hello over tls", "version=TLSv1.3")
}

// TestOutboundFigures logs the time of a round trip on an open connection
// and of a full HTTPS handshake from the guest (sandbox/README.md
// "Outbound connections" has the figures and the native comparison).
func TestOutboundFigures(t *testing.T) {
	_, port := listen(t, echoLines)
	srv, tport, _ := tlsServer(t)
	d := &loopDialer{roots: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	inst, logs := netInstance(t, sandbox.AppConfig{Outbound: d})
	body := mustScenario(t, inst, logs, fmt.Sprintf("/figures?port=%d&tls_port=%d", port, tport))
	wantLines(t, body, "rtt_us=", "handshake_ms=")
	t.Log(strings.TrimSpace(body))
}

// appCommand runs a -c script with RunAppCommand in a folder of its own,
// with cfg's outbound settings, and returns its exit code and output.
func appCommand(t *testing.T, cfg sandbox.AppConfig, script string) (int, string, string) {
	t.Helper()
	cfg.App, cfg.Dir = "app:application", t.TempDir()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, err := testEngine(t).RunAppCommand(ctx, cfg, []string{"-c", script}, sandbox.Command{Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatalf("RunAppCommand: %v\nstderr: %s", err, errOut.String())
	}
	return code, out.String(), errOut.String()
}

// TestOutboundAppCommand: a command run in an app's sandbox (wsgi-wasm
// exec) connects as the app's instances do, through cfg.Outbound: a round
// trip, a refusal naming the destination (nothing reaches the listener),
// its connections closed when it ends, and the connection cap.
func TestOutboundAppCommand(t *testing.T) {
	eof := make(chan struct{}, 1)
	l, port := listen(t, func(c net.Conn) {
		echoLines(c)
		select {
		case eof <- struct{}{}:
		default:
		}
	})
	script := fmt.Sprintf(`import socket
s = socket.create_connection(("127.0.0.1", %d), timeout=10)
s.sendall(b"hello\n")
print("echo", s.makefile("rb").readline())
`, port) // s left open: the host closes it when the command ends
	code, out, errOut := appCommand(t, sandbox.AppConfig{Outbound: &loopDialer{}}, script)
	if code != 0 || out != "echo b'hello\\n'\n" {
		t.Fatalf("round trip: exit %d, out %q, stderr:\n%s", code, out, errOut)
	}
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer saw no EOF after the command ended")
	}
	accepted := l.accepted.Load()
	code, out, errOut = appCommand(t, sandbox.AppConfig{}, script) // nil Outbound: outbound.Deny
	if code != 1 || !strings.Contains(errOut, "PermissionError: [Errno 2] outbound: connection to 127.0.0.1:") ||
		!strings.Contains(errOut, fmt.Sprintf(`add "127.0.0.1:%d" to [policy] outbound`, port)) {
		t.Fatalf("refused: exit %d, out %q, stderr:\n%s", code, out, errOut)
	}
	time.Sleep(50 * time.Millisecond)
	if n := l.accepted.Load() - accepted; n != 0 {
		t.Errorf("the listener accepted %d connections; a refusal must send nothing", n)
	}
	capScript := fmt.Sprintf(`import socket
conns = [socket.create_connection(("127.0.0.1", %d)) for _ in range(2)]
try:
    socket.create_connection(("127.0.0.1", %d))
except OSError as e:
    print("third", e)
`, port, port)
	code, out, errOut = appCommand(t, sandbox.AppConfig{Outbound: &loopDialer{}, MaxConnections: 2}, capScript)
	if code != 0 || out != "third [Errno 33] too many open connections (this instance may hold 2)\n" {
		t.Fatalf("cap: exit %d, out %q, stderr:\n%s", code, out, errOut)
	}
}

// TestOutboundDefaultCAFile: the system's CA bundle path (certifi.where()
// on Debian) and folder exist in the guest and, loaded, mean the host's
// trust store (the Dialer's roots): a server that store trusts is verified,
// and with a store that does not trust it the handshake fails.
func TestOutboundDefaultCAFile(t *testing.T) {
	srv, port, _ := tlsServer(t)
	script := fmt.Sprintf(`import os, ssl, urllib.request
p = ssl.get_default_verify_paths()
print("paths", p.cafile, p.capath, os.path.getsize(p.cafile) > 0)
for kind, ctx in (("cafile", ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt")),
                  ("capath", ssl.create_default_context(capath=b"/etc/ssl/certs/"))):
    try:
        print(kind, urllib.request.urlopen("https://127.0.0.1:%d/" + kind, context=ctx, timeout=10).read())
    except urllib.error.URLError as e:
        print(kind, type(e.reason).__name__, e.reason.verify_message)
`, port)
	trusting := &loopDialer{roots: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	code, out, errOut := appCommand(t, sandbox.AppConfig{Outbound: trusting}, script)
	want := "paths /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs True\ncafile b'tls:/cafile'\ncapath b'tls:/capath'\n"
	if code != 0 || out != want {
		t.Fatalf("trusting store: exit %d, out %q, want %q; stderr:\n%s", code, out, want, errOut)
	}
	code, out, errOut = appCommand(t, sandbox.AppConfig{Outbound: &loopDialer{roots: x509.NewCertPool()}}, script)
	want = "paths /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs True\ncafile SSLCertVerificationError self-signed certificate\ncapath SSLCertVerificationError self-signed certificate\n"
	if code != 0 || out != want {
		t.Fatalf("untrusting store: exit %d, out %q, want %q; stderr:\n%s", code, out, want, errOut)
	}
}
