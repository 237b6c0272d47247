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
