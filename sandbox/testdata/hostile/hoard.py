# A tenant that opens files and keeps them: every open counts against the
# instance's budget, across requests.
import os

held = []


def application(environ, start_response):
    opened, error = 0, ""
    try:
        for _ in range(1000):
            held.append(open("/app/hoard.py", "rb"))
            opened += 1
    except OSError as e:
        error = type(e).__name__
    if environ["QUERY_STRING"] == "close":
        for f in held:
            f.close()
        held.clear()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d %s" % (opened, error)).encode()]


def fifo(environ, start_response):
    try:
        with open("/app/pipe.py", "rb") as f:
            result = "read %r" % f.read(10)
    except OSError as e:
        result = type(e).__name__
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [result.encode()]
