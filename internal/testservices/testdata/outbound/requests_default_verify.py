"""HTTPS through requests with its default verification: no verify=, no
REQUESTS_CA_BUNDLE, so requests loads certifi.where() (Debian's certifi:
/etc/ssl/certs/ca-certificates.crt). In the sandbox that means the host's
trust store (README.md "Outbound connections").

Environment: HTTPS_URL (the server's root, https://HOST:PORT). Prints, on
its last line: {"status": int, "body": str, "certifi_where": ...} or, when
the certificate is refused, {"ssl_error": str, "certifi_where": ...}.
"""
import json
import os

import certifi
import requests

os.environ.pop("REQUESTS_CA_BUNDLE", None)
os.environ.pop("CURL_CA_BUNDLE", None)
out = {"certifi_where": certifi.where()}
try:
    r = requests.get(os.environ["HTTPS_URL"] + "/default-verify", timeout=30)
    out.update(status=r.status_code, body=r.text)
except requests.exceptions.SSLError as e:
    out["ssl_error"] = str(e)
print(json.dumps(out))
