"""Outbound connections from unmodified stdlib code (sandbox/net_test.go).
PATH_INFO picks the scenario; the query string gives port, host and mode.
Each answers text lines for the test to check."""
import http.client
import os
import select
import selectors
import socket
import ssl
import urllib.parse
import urllib.request

_kept = []


def _ctx(q):
    mode = q.get("mode", "default")
    if mode == "none":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif mode == "cadata":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=os.environ["CA_PEM"])
    else:
        ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def echo(q, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    out = ["peer=%s:%d" % s.getpeername()[:2], "local_port_set=%s" % (s.getsockname()[1] > 0),
           "nodelay=%d" % s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)]
    s.sendall(b"hello\nworld\n")
    f = s.makefile("rb")
    out.append("line1=" + f.readline().decode().strip())
    out.append("line2=" + f.readline().decode().strip())
    f.close()
    s.shutdown(socket.SHUT_WR)
    out.append("eof=%r" % s.recv(10))
    s.close()
    out.append("fileno_after_close=%d" % s.fileno())
    return out


def readiness(q, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    out = ["connect_ex=%d" % s.connect_ex(("127.0.0.1", port))]
    r, _, _ = select.select([s], [], [], 0)
    out.append("before=%d" % len(r))
    _, w, _ = select.select([], [s], [], 0)
    out.append("writable=%d" % len(w))
    s.sendall(b"ping\n")
    r, _, _ = select.select([s], [], [], 5)
    out.append("select=%d" % len(r))
    p = select.poll()
    p.register(s, select.POLLIN)
    out.append("poll=%r" % [(fd == s.fileno(), ev & select.POLLIN != 0) for fd, ev in p.poll(5000)])
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ, "data")
    ev = sel.select(5)
    out.append("selector=%s %s %s" % (type(sel).__name__, len(ev), ev and ev[0][0].data))
    buf = bytearray(100)
    n = s.recv_into(buf)
    out.append("got=" + buf[:n].decode().strip())
    s.setblocking(False)
    try:
        s.recv(10)
        out.append("nonblocking=data")
    except BlockingIOError:
        out.append("nonblocking=BlockingIOError")
    s.close()
    return out


def timeout(q, port):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.2)
    try:
        s.recv(10)
        return ["no timeout"]
    except socket.timeout as e:
        return ["timeout=%s %s gettimeout=%s" % (type(e).__name__, e, s.gettimeout())]
    finally:
        s.close()


def cap(q, port):
    socks, out = [], []
    try:
        for _ in range(100):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError as e:
        out.append("opened=%d error=%s: %s" % (len(socks), type(e).__name__, e))
    for s in socks:
        s.close()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out.append("after_close=ok")
    s.close()
    return out


def hang(q, port):
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(10)
    return ["returned"]


def deny(q, port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        return ["%s: %s" % (type(e).__name__, e)]
    return ["connected"]


def refused(q, port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        return ["%s" % type(e).__name__]
    return ["connected"]


def unsupported(q, port):
    out = []
    for what in ("bind", "udp"):
        try:
            if what == "bind":
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.bind(("::1", 0))
            else:
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            out.append(what + "=allowed")
        except OSError as e:
            out.append("%s=%s" % (what, type(e).__name__))
    out.append("gai=%r" % (socket.getaddrinfo("db.internal", 5432)[0][4],))
    out.append("gai6=%r" % (socket.getaddrinfo("::1", "https")[0][4],))
    return out


def keep(q, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    _kept.append(s)
    return ["kept"]


def peek_one(q, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    _kept.append(s)
    select.select([s], [], [], 0.5)
    return ["selected"]


def tls(q, port):
    host = q.get("host", "example.com")
    try:
        raw = socket.create_connection((host, port), timeout=5)
        s = _ctx(q).wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as e:
        return ["SSLCertVerificationError verify_code=%s %s" % (e.verify_code, e)]
    except OSError as e:
        return ["%s: %s" % (type(e).__name__, e)]
    out = ["version=%s" % s.version(), "cipher=%s" % (s.cipher()[0] is not None),
           "alpn=%s" % s.selected_alpn_protocol()]
    cert = s.getpeercert()
    out.append("subject=%r" % (cert.get("subject"),))
    out.append("san=%r" % (cert.get("subjectAltName"),))
    out.append("der=%d" % len(s.getpeercert(binary_form=True)))
    s.sendall(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    out.append("status=" + data.split(b"\r\n", 1)[0].decode())
    s.close()
    return out


def httpclient(q, port):
    out = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/plain")
    r = c.getresponse()
    out.append("http.client=%d %s" % (r.status, r.read().decode()))
    c.request("GET", "/again")
    r = c.getresponse()
    out.append("reused=%d %s" % (r.status, r.read().decode()))
    c.close()
    with urllib.request.urlopen("http://127.0.0.1:%d/urllib" % port, timeout=5) as r:
        out.append("urllib=%d %s" % (r.status, r.read().decode()))
    tport = int(q["tls_port"])
    c = http.client.HTTPSConnection("example.com", tport, timeout=5, context=_ctx(q))
    c.request("GET", "/secure")
    r = c.getresponse()
    out.append("https=%d %s" % (r.status, r.read().decode()))
    with urllib.request.urlopen("https://example.com:%d/urllib-tls" % tport, timeout=5, context=_ctx(q)) as r:
        out.append("urllib_https=%d %s" % (r.status, r.read().decode()))
    return out


def wrap_first(q, port):
    s = _ctx(q).wrap_socket(socket.socket(), server_hostname="example.com")
    s.connect(("example.com", port))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return ["wrap_first=" + s.recv(100).split(b"\r\n", 1)[0].decode(), "version=" + s.version()]


def figures(q, port):
    """Round trips on one open connection, and full HTTPS handshakes."""
    import time
    n = int(q.get("n", 500))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    for _ in range(n):
        s.sendall(b"x\n")
        if s.recv(10) != b"x\n":
            return ["bad echo"]
    rtt = (time.perf_counter() - start) / n
    s.close()
    tport, k = int(q["tls_port"]), 20
    start = time.perf_counter()
    for _ in range(k):
        t = _ctx(q).wrap_socket(socket.create_connection(("example.com", tport), timeout=5), server_hostname="example.com")
        t.close()
    hs = (time.perf_counter() - start) / k
    return ["rtt_us=%.1f" % (rtt * 1e6), "handshake_ms=%.2f" % (hs * 1e3)]


def starttls(q, port):
    s = socket.create_connection(("example.com", port), timeout=5)
    s.sendall(b"STARTTLS\n")
    ok = s.recv(1)
    s = _ctx(q).wrap_socket(s, server_hostname="example.com")
    s.sendall(b"hello over tls\n")
    return ["answer=%r" % ok, "tls=" + s.recv(100).decode().strip(), "version=" + s.version()]


def server_side(q, port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).wrap_socket(s, server_side=True)
    except (ValueError, OSError) as e:
        return ["%s: %s" % (type(e).__name__, e)]
    return ["allowed"]


SCENARIOS = {f.__name__: f for f in (echo, readiness, timeout, cap, hang, deny, refused, unsupported, keep,
                                     peek_one, tls, httpclient, starttls, server_side, wrap_first, figures)}


def app(environ, start_response):
    q = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    out = SCENARIOS[environ["PATH_INFO"].strip("/")](q, int(q.get("port", 0)))
    body = ("\n".join(out) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


# Connects at import when asked (the snapshot test).
if os.environ.get("CONNECT_AT_IMPORT"):
    _kept.append(socket.create_connection(("127.0.0.1", int(os.environ["CONNECT_AT_IMPORT"])), timeout=5))
