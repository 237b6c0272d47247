"""An app that keeps a file open from its import on: a restored instance
would not have the descriptor, so it must not be snapshotted."""
_f = open(__file__, "rb")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [_f.read(1)]
