"""A plain WSGI app: the smallest tenant."""
import sys


def application(environ, start_response):
    name = environ.get("QUERY_STRING", "").partition("name=")[2] or "world"
    body = ("Hello, %s! (CPython %s on %s, path %s)\n" % (
        name, sys.version.split()[0], sys.platform, environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
