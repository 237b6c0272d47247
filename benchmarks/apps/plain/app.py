"""Plain-WSGI hello world for the server benchmarks (no framework)."""
import time

BODY = b"Hello, World!\n"


def app(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        # Holds an instance busy (cold-start benchmark: adding an instance).
        time.sleep(float(environ.get("QUERY_STRING") or 1))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
