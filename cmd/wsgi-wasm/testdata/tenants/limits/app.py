"""/sleep?S sleeps S seconds, /spin never ends, /unread answers without reading
the body, anything else reads the body."""
import time


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    elif path == "/spin":
        while True:
            pass
    elif path == "/unread":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"unread"]
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"read %d bytes" % len(body)]
