"""hashlib.pbkdf2_hmac backed by the host (sandbox/pbkdf2_test.go, hostabi/ABI.md
"Key derivation"). PATH_INFO picks the scenario; each answers text lines."""
import hashlib
import time
import urllib.parse
import warnings

import _wsgi_host

# RFC 6070 (PBKDF2-HMAC-SHA1) and RFC 7914 section 11 (PBKDF2-HMAC-SHA256).
VECTORS = [
    ("sha1", b"password", b"salt", 1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
    ("sha1", b"password", b"salt", 2, 20, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"),
    ("sha1", b"password", b"salt", 4096, 20, "4b007901b765489abead49d926f721d065a429c1"),
    ("sha1", b"passwordPASSWORDpassword", b"saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 25,
     "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038"),
    ("sha1", b"pass\0word", b"sa\0lt", 4096, 16, "56fa6aa75548099dcc37d7f03425e0c3"),
    ("sha256", b"passwd", b"salt", 1, 64,
     "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
     "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"),
    ("sha256", b"Password", b"NaCl", 80000, 64,
     "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
     "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"),
]


def vectors(q):
    out = ["installed=%s" % getattr(hashlib.pbkdf2_hmac, "_wsgi_host", False)]
    for name, pw, salt, it, dklen, want in VECTORS:
        got = hashlib.pbkdf2_hmac(name, pw, salt, it, dklen).hex()
        out.append("%s %d %s" % (name, it, "ok" if got == want else "got " + got))
    return out


def _outcome(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return "=" + f(*args).hex()
        except Exception as e:
            return "%s: %s" % (type(e).__name__, e)


def same(q):
    """The host's results and exceptions are the pure-Python function's."""
    pure = hashlib._pure_pbkdf2_hmac
    long_pw = bytes(range(256)) * 3  # longer than every block size
    cases = []
    for name in ("md5", "MD5", "sha1", "SHA1", "sha224", "sha256", "SHA256", "sha384", "sha512"):
        for pw, salt, it, dklen in ((b"pw", b"salt", 3, None), (long_pw, b"s" * 200, 2, 100),
                                    (bytearray(b"p"), memoryview(b"salty"), 5, 1), (b"", b"", 1, 130)):
            cases.append((name, pw, salt, it, dklen))
    # What the host does not take, or what raises: CPython's path decides.
    cases += [("sha3_256", b"pw", b"salt", 3, None), ("blake2b", b"pw", b"salt", 2, 10),
              ("nope", b"pw", b"salt", 1, None), (b"sha256", b"pw", b"salt", 1, None),
              ("sha256", "text", b"salt", 1, None), ("sha256", b"pw", 5, 1, None),
              ("sha256", b"pw", b"salt", 0, None), ("sha256", b"pw", b"salt", -3, None),
              ("sha256", b"pw", b"salt", 1, 0), ("sha256", b"pw", b"salt", 1.5, None),
              ("sha256", b"pw", b"salt", True, 8), ("sha256", memoryview(b"abcdef")[::2], b"salt", 2, None)]
    out = []
    for c in cases:
        host, py = _outcome(hashlib.pbkdf2_hmac, *c), _outcome(pure, *c)
        if c[0] in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512") and c[3] == 3:
            # the host itself, not a fallback
            host = _outcome(_wsgi_host.pbkdf2_hmac, c[0], c[1], c[2], c[3], hashlib.new(c[0]).digest_size)
        out.append("%r %s" % (c[0], "same" if host == py else "differs: host %s pure %s" % (host, py)))
    return out


def fallback(q):
    """Above the caps the host refuses and the guest computes."""
    h = _wsgi_host.pbkdf2_hmac
    big = hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1, 65537)
    pure = _outcome(hashlib._pure_pbkdf2_hmac, "sha256", b"pw", b"salt", 1, 65537)
    return [
        "iterations_over_cap=%r" % h("sha1", b"password", b"salt", 16777216, 20),
        "work_over_cap=%r" % h("sha512", b"pw", b"salt", 2000001, 128),
        "dklen_over_cap=%r" % h("sha256", b"pw", b"salt", 1, 65537),
        "password_over_cap=%r" % h("sha256", b"p" * 65537, b"salt", 1, 32),
        "unknown_hash=%r" % h("sha3_256", b"pw", b"salt", 1, 32),
        "long_key_len=%d same=%s" % (len(big), "=" + big.hex() == pure),
    ]


def deadline(q):
    """At the cap, for longer than the request may take."""
    hashlib.pbkdf2_hmac("sha512", b"pw", b"salt", 4000000, 64)
    return ["not interrupted"]


def bench(q):
    """Django 3.2's default (sha256, 260,000 iterations, dklen 32), repeat
    times each: the times in ms, sorted, and the key."""
    it, repeat = int(q.get("iterations", 260000)), int(q.get("repeat", 1))
    out = []
    for name, f in (("host", hashlib.pbkdf2_hmac), ("pure", hashlib._pure_pbkdf2_hmac)):
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for _ in range(repeat):
                t = time.perf_counter()
                key = f("sha256", b"correct horse", b"8AoELi8zWl1KqvEG", it, 32)
                times.append((time.perf_counter() - t) * 1000)
        out.append("%s_ms=%s key=%s" % (name, " ".join("%.0f" % x for x in sorted(times)), key.hex()))
    return out


SCENARIOS = {f.__name__: f for f in (vectors, same, fallback, deadline, bench)}


def app(environ, start_response):
    q = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    out = SCENARIOS[environ["PATH_INFO"].strip("/")](q)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\n".join(out) + "\n").encode()]
