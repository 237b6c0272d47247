"""HTTPS through requests (Debian 12: 2.28.1, urllib3 1.26.12): a GET and a
POST verified against a given CA, then a GET verified against the default
store, which must fail for a test CA's certificate.

Environment: HTTPS_URL (the server's root, https://HOST:PORT), CA_FILE.
The server answers each request with its method, path and body. Prints,
on its last line:
{"get": {...}, "post": {...}, "default_store_refused": bool, "certifi_where": ..., "driver": ...}
"""
import json
import os
import secrets

import certifi
import requests

url, ca = os.environ["HTTPS_URL"], os.environ["CA_FILE"]
token = secrets.token_hex(8)
with requests.Session() as s:
    get = s.get(url + "/get", params={"token": token}, verify=ca, timeout=30)
    get.raise_for_status()
    post = s.post(url + "/post", json={"token": token}, verify=ca, timeout=30)
    post.raise_for_status()
try:
    requests.get(url + "/default", timeout=30)
    refused = False
except requests.exceptions.SSLError:
    refused = True
print(json.dumps({"token": token, "get": get.json(), "post": post.json(), "default_store_refused": refused,
                  "certifi_where": certifi.where(), "driver": "requests " + requests.__version__}))
