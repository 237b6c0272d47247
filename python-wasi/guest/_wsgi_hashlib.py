"""hashlib.pbkdf2_hmac computed by the host (hostabi/ABI.md "Key derivation").

This CPython has no _hashlib (no OpenSSL), so hashlib.pbkdf2_hmac is
CPython's pure-Python fallback, about a second of guest CPU for one Django
login. install() replaces it with pbkdf2_hmac below, which hands the usual
cases (a hash name hashlib's builtin hashes know, int iterations and dklen,
buffers, within the host's caps) to the host's Go crypto/pbkdf2 and every
other call to CPython's own function, so results and exceptions are always
CPython's. The pure-Python function stays reachable as
hashlib._pure_pbkdf2_hmac (for benchmarks and tests). One difference: the
host's path gives no DeprecationWarning, as CPython's OpenSSL one does not.

The reactor's bootstrap calls install() before an app's code runs, and so
does wsgi-wasm exec's prelude; where _wsgi_host has no pbkdf2_hmac (the
command module, python.wasm) install() changes nothing but the alias.
"""

# The names hashlib.new takes for them without OpenSSL, to the host's name
# and the digest size (the default dklen).
_HASHES = {
    "md5": ("md5", 16), "MD5": ("md5", 16),
    "sha1": ("sha1", 20), "SHA1": ("sha1", 20),
    "sha224": ("sha224", 28), "SHA224": ("sha224", 28),
    "sha256": ("sha256", 32), "SHA256": ("sha256", 32),
    "sha384": ("sha384", 48), "SHA384": ("sha384", 48),
    "sha512": ("sha512", 64), "SHA512": ("sha512", 64),
}


def install():
    """Back hashlib.pbkdf2_hmac by the host; return whether it now is.

    Keeps CPython's pure-Python function as hashlib._pure_pbkdf2_hmac. An
    interpreter with OpenSSL's pbkdf2_hmac (a builtin function) or without
    the host function keeps its own. Calling it again changes nothing."""
    import hashlib

    current = hashlib.pbkdf2_hmac
    if getattr(current, "_wsgi_host", False):
        return True
    if not hasattr(current, "__code__"):
        return False  # OpenSSL's, from _hashlib
    hashlib._pure_pbkdf2_hmac = current
    try:
        from _wsgi_host import pbkdf2_hmac as host
    except ImportError:
        return False
    hashlib.pbkdf2_hmac = _make(host, current)
    return True


def _make(host, pure):
    def pbkdf2_hmac(hash_name, password, salt, iterations, dklen=None):
        known = _HASHES.get(hash_name) if type(hash_name) is str else None
        if known is not None and type(iterations) is int and (dklen is None or type(dklen) is int):
            try:
                key = host(known[0], password, salt, iterations, known[1] if dklen is None else dklen)
            except (TypeError, ValueError, OverflowError, BufferError):
                key = None  # a buffer _wsgi_host does not take: CPython's path decides
            if type(key) is bytes:
                return key
        return pure(hash_name, password, salt, iterations, dklen)

    pbkdf2_hmac.__doc__ = pure.__doc__
    pbkdf2_hmac.__module__ = pure.__module__
    pbkdf2_hmac.__qualname__ = pure.__qualname__
    pbkdf2_hmac._wsgi_host = True
    return pbkdf2_hmac
