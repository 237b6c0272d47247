"""An app that keeps a bare descriptor open from its import on (os.open,
no file object): the snapshot is refused by descriptor number."""
import os

_fd = os.open(__file__, os.O_RDONLY)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.pread(_fd, 1, 0)]
