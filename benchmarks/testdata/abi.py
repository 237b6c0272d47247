"""Apps for the ABI benchmarks: fixed bodies out, a body in."""
KIB = b"k" * 1024
MIB = b"m" * (1 << 20)


def out_1k(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "1024")])
    return [KIB]


def out_1m(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(MIB)))])
    return [MIB]


def read_in(environ, start_response):
    inp = environ["wsgi.input"]
    n = 0
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        n += len(chunk)
    body = str(n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_echo(environ, start_response):
    """The environ's string values back, one "KEY=VALUE" line each, sorted:
    the environ round trip (host encodes, guest decodes, guest encodes the
    body, host decodes)."""
    body = "".join("%s=%s\n" % (k, v) for k, v in sorted(environ.items()) if isinstance(v, str)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
