"""Apps that never finish on their own, for the interruption tests."""
import re
import time


def _respond(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])


def spin(environ, start_response):
    n = 0
    while True:
        n += 1


def regex(environ, start_response):
    # Catastrophic backtracking: the loop is in C (the sre engine).
    re.match(r"(a+)+$", "a" * 64 + "b")
    _respond(start_response)
    return [b"unreachable"]


def sleeper(environ, start_response):
    time.sleep(60)
    _respond(start_response)
    return [b"woke"]


def reader(environ, start_response):
    data = environ["wsgi.input"].read(10)
    _respond(start_response)
    return [data]


def quick(environ, start_response):
    _respond(start_response)
    return [b"ok"]
