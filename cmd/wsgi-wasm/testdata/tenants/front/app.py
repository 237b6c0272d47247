"""Echoes what the front passed: the tenant, PATH_INFO, QUERY_STRING, HTTP_HOST, X-Value."""


def application(environ, start_response):
    body = "|".join(["front", environ["PATH_INFO"], environ["QUERY_STRING"],
                     environ.get("HTTP_HOST", ""), environ.get("HTTP_X_VALUE", "")])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode("latin-1")]
