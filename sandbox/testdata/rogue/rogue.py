"""A tenant that breaks the response contract on purpose, as one that
controls its interpreter can: it calls the host's response_start directly,
past the bootstrap's checks, then tries to answer 200 anyway."""
import sys

import _wsgi_host

STARTS = {
    "many_headers": b"200 OK\x00" + b"X-Header-N\x00v\x00" * 2_000_000,
    "one_over_count": b"200 OK\x00" + b"Set-Cookie\x00a=1\x00" * 101,
    "one_over_size": b"200 OK\x00X-Big\x00" + b"v" * 65536 + b"\x00",
    "upgrade": b"101 Switching Protocols\x00Upgrade\x00websocket\x00",
    "continue": b"100 Continue\x00",
    "status_600": b"600 Beyond\x00",
    "conflicting_length": b"200 OK\x00Content-Length\x002\x00Content-Length\x0020\x00",
    "length_not_a_number": b"200 OK\x00Content-Length\x002 \x00",
    "cr_in_value": b"200 OK\x00X-A\x00a\rSet-Cookie: admin=1\x00",
    "escape_in_value": b"200 OK\x00X-A\x00\x1b[2J\x00",
}


def app(environ, start_response):
    if environ["QUERY_STRING"] == "identical_length":  # through the bootstrap, which lets it pass
        start_response("200 OK", [("Content-Length", "2"), ("content-length", "2")])
        return [b"ok"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        _wsgi_host.start(STARTS[environ["QUERY_STRING"]])
    except ValueError:
        pass
    return [b"ok"]


def loud(environ, start_response):
    """50 MB to stdout in one line."""
    sys.stdout.write("x" * 50_000_000 + "\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def big_read(environ, start_response):
    """One input_read into a 100 MB buffer."""
    n = _wsgi_host.readinto(bytearray(100_000_000))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(n).encode()]
