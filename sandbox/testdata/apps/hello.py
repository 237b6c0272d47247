"""Test apps for the runtime package; each is also served wrapped in
wsgiref.validate.validator (the *_validated names)."""
import sys
from wsgiref.validate import validator


def hello(environ, start_response):
    body = b"Hello, " + environ["PATH_INFO"].encode("latin-1") + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    """Echoes the request body and selected environ keys."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
            "CONTENT_LENGTH", "SERVER_PROTOCOL", "HTTP_X_MULTI", "HTTP_COOKIE", "wsgi.url_scheme")
    head = "".join("%s=%s\n" % (k, environ.get(k)) for k in keys).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [head, b"body=", body]


def counter_factory():
    state = {"n": 0}

    def app(environ, start_response):
        state["n"] += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(state["n"]).encode()]

    return app


counter = counter_factory()


def crash(environ, start_response):
    print("about to fail", file=environ["wsgi.errors"])
    raise RuntimeError("tenant bug")


def exits(environ, start_response):
    sys.exit(3)


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
    return [b"never"]


hello_validated = validator(hello)
echo_validated = validator(echo)


def hard_exit(environ, start_response):
    import os
    os._exit(9)


def overflow(environ, start_response):
    """Recursion through C (map calls f) with no recursion limit: the wasm
    stack overflows, a trap rather than a Python exception."""
    sys.setrecursionlimit(10 ** 7)

    def f(n):
        return list(map(f, [n - 1])) if n else 0

    f(10 ** 6)


def hash_seed(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(hash("wsgi-wasm")).encode()]


def streamed(environ, start_response):
    """No Content-Length: HTTP/1.1 clients get it chunked."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"one ", b"two ", b"three"])
