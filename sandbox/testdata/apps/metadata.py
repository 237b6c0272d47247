"""An app that reads its packages' entry points at import, as Pygments
does: importlib.metadata searches every sys.path entry, the stdlib zip
included, and caches what it opened; the snapshot must still be taken."""
import importlib.metadata

GROUPS = sorted(importlib.metadata.entry_points().groups)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(GROUPS).encode()]
