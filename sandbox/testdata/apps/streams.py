"""Large bodies, in and out, in bounded memory."""
import hashlib


def lockstep(environ, start_response):
    """Yields CHUNKS chunks of SIZE bytes; before each next chunk it reads one
    byte of the request body, which the test client sends only after it has
    received the previous chunk whole."""
    size = int(environ["QUERY_STRING"].split("size=")[1].split("&")[0])
    chunks = int(environ["QUERY_STRING"].split("chunks=")[1].split("&")[0])
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size * chunks))])
    inp = environ["wsgi.input"]
    block = b"x" * size

    def body():
        for i in range(chunks):
            if i > 0 and inp.read(1) != b"+":
                raise RuntimeError("client did not acknowledge chunk %d" % (i - 1))
            yield block

    return body()


def upload(environ, start_response):
    """Hashes the request body, read in 64 KiB pieces."""
    inp = environ["wsgi.input"]
    h = hashlib.sha256()
    total = 0
    while True:
        piece = inp.read(65536)
        if not piece:
            break
        h.update(piece)
        total += len(piece)
    body = ("%d %s" % (total, h.hexdigest())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _Teardown:
    """A response body of declared length whose close() keeps the app busy
    after its last byte: it reads the client's acknowledgement (mode=read),
    spins on the CPU (mode=spin) or sleeps (mode=sleep) for SECONDS."""

    def __init__(self, body, mode, seconds, inp):
        self.body, self.mode, self.seconds, self.inp = body, mode, seconds, inp

    def __iter__(self):
        yield self.body

    def close(self):
        import time
        if self.mode == "read":
            if self.inp.read(1) != b"+":
                raise RuntimeError("client did not acknowledge the body")
        elif self.mode == "spin":
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                pass
        elif self.mode == "sleep":
            time.sleep(self.seconds)


def teardown(environ, start_response):
    """?mode=read|spin|sleep&seconds=S: a short body (it fits the HTTP
    server's buffer), then _Teardown.close."""
    q = dict(kv.split("=") for kv in environ["QUERY_STRING"].split("&"))
    body = b"t" * 100
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return _Teardown(body, q["mode"], float(q.get("seconds", "0")), environ["wsgi.input"])
