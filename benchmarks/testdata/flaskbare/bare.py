"""The example Flask app (app.py, copied beside this file by
TestGuestProfile) behind a wrapper that can time it without the host.

GET /bare?n=N calls the Flask app N times in a loop, the way a WSGI server
would but inside the guest (a minimal environ, a start_response that keeps
nothing, the body joined, the result closed), and answers the nanoseconds
per call. Any other request is handed to the Flask app unchanged, through
the host ABI like any served request."""
import io
import sys
import time

from app import app as flask_app

BASE = {
    "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
    "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
    "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
    "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
}


def _start_response(status, headers, exc_info=None):
    return None


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/bare":
        return flask_app(environ, start_response)
    n = int(environ.get("QUERY_STRING", "n=1000").partition("=")[2] or 1000)
    body = b""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        env = dict(BASE)
        env["wsgi.input"] = io.BytesIO(b"")
        result = flask_app(env, _start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    per_call = (time.perf_counter_ns() - t0) // n
    if body != b"Hello from Flask!\n":
        raise RuntimeError("unexpected body from the Flask app: %r" % body)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % per_call]
