"""An app whose import leaves state behind: what a snapshot must keep (the
token drawn at import, the module's globals) and what it must not share
(the random generators' next numbers)."""
import random
import time

IMPORT_TOKEN = random.random()  # drawn once, at import: part of the image
own_rng = random.Random()  # an app's own generator, seeded at import
count = 0


def app(environ, start_response):
    global count
    count += 1
    body = "%r %r %r %d %s %d\n" % (IMPORT_TOKEN, random.random(), own_rng.random(), count,
                                   environ["PATH_INFO"], int(time.time()))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
