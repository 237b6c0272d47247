"""start_response as PEP 3333 wants it, checked by the guest (the bootstrap's
_wsgi_host.Response): the query string names a case of startresponse_test.go."""
import sys


def _bad(headers, status="200 OK"):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"never"]
    return app


def _twice(environ, start_response):
    start_response("200 OK", [])
    start_response("200 OK", [])
    return [b"never"]


def _str_body(environ, start_response):
    start_response("200 OK", [])
    return ["text"]


def _no_start(environ, start_response):
    return [b"body"]


def _keywords(environ, start_response):
    write = start_response(headers=[("X-Kw", "yes")], status="201 Created")
    write(b"written, ")
    return [b"returned"]


def _latin1(environ, start_response):
    start_response("200 Caf\xe9", [("X-Latin", "caf\xe9")])
    return [b"ok"]


def _error_before_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start_response("503 Busy", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"busy"]


def _error_after_body(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Oops", [], sys.exc_info())
    return [b"never"]


def _errors_partial(environ, start_response):
    environ["wsgi.errors"].write("a line without its end")
    start_response("200 OK", [])
    return [b"ok"]


CASES = {
    "status-bytes": _bad([], status=b"200 OK"),
    "status-short": _bad([], status="200"),
    "status-zero": _bad([], status="099 Low"),
    "headers-tuple": _bad((("X-A", "b"),)),
    "header-not-pair": _bad(["X-A"]),
    "header-name-int": _bad([(1, "b")]),
    "header-value-none": _bad([("X-A", None)]),
    "header-value-euro": _bad([("X-Euro", "\u20ac")]),
    "header-value-nul": _bad([("X-A", "a\0b")]),
    "header-name-crlf": _bad([("X-A\r\nInjected", "yes")]),
    "header-name-space": _bad([("X A", "b")]),
    "header-name-empty": _bad([("", "b")]),
    "hop-by-hop": _bad([("Content-Type", "text/plain"), ("KEEP-alive", "timeout=5")]),
    "twice": _twice,
    "str-body": _str_body,
    "no-start": _no_start,
    "errors-partial": _errors_partial,
    "keywords": _keywords,
    "latin-1": _latin1,
    "error-before-body": _error_before_body,
    "error-after-body": _error_after_body,
}


def app(environ, start_response):
    return CASES[environ["QUERY_STRING"]](environ, start_response)
