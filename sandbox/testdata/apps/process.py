"""An app that reports the process state its instance was given: a tenant
on a shared base image must see its own arguments and environment."""
import os
import sys


def app(environ, start_response):
    body = "argv=%s env=%s envb=%s hash=%d\n" % (
        sys.argv[1], os.environ.get("TENANT_TOKEN", "-"),
        os.environb.get(b"TENANT_TOKEN", b"-").decode(), hash("wsgi-wasm"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
