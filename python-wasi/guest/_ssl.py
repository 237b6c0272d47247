"""_ssl for the sandbox: the interface of CPython's _ssl over TLS done by the
host (Go crypto/tls), so that the standard ssl.py runs unchanged.

The guest holds a context's settings (verify mode, host-name check, CA
certificates it loaded from its own files, ALPN, versions); at the
handshake it passes them to the host (hostabi/ABI.md "net_tls_handshake"),
which verifies the server as CPython would and then encrypts and decrypts
the connection's bytes itself: the socket's reads and writes carry
plaintext. Client sockets only; TLS over memory buffers (MemoryBIO,
SSLObject, asyncio's TLS) and client certificates raise NotImplementedError.
"""

import _wsgi_host as _h
import base64 as _base64
import errno as _errno
import json as _json
import os as _os

from _wsgi_socket import FD_BASE as _FD_BASE, _ms

OPENSSL_VERSION = "OpenSSL 3.0.0 compatible (TLS by the wsgi-wasm host: Go crypto/tls)"
OPENSSL_VERSION_INFO = (3, 0, 0, 0, 15)
OPENSSL_VERSION_NUMBER = 0x300000F0
_OPENSSL_API_VERSION = OPENSSL_VERSION_INFO
_DEFAULT_CIPHERS = "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"

HAS_SNI = HAS_ECDH = HAS_ALPN = True
HAS_NPN = HAS_SSLv2 = HAS_SSLv3 = HAS_TLS_UNIQUE = False
HAS_TLSv1 = HAS_TLSv1_1 = HAS_TLSv1_2 = HAS_TLSv1_3 = True

# The constants have OpenSSL 3's values, as CPython's _ssl exports them.
ALERT_DESCRIPTION_ACCESS_DENIED = 49
ALERT_DESCRIPTION_BAD_CERTIFICATE = 42
ALERT_DESCRIPTION_BAD_CERTIFICATE_HASH_VALUE = 114
ALERT_DESCRIPTION_BAD_CERTIFICATE_STATUS_RESPONSE = 113
ALERT_DESCRIPTION_BAD_RECORD_MAC = 20
ALERT_DESCRIPTION_CERTIFICATE_EXPIRED = 45
ALERT_DESCRIPTION_CERTIFICATE_REVOKED = 44
ALERT_DESCRIPTION_CERTIFICATE_UNKNOWN = 46
ALERT_DESCRIPTION_CERTIFICATE_UNOBTAINABLE = 111
ALERT_DESCRIPTION_CLOSE_NOTIFY = 0
ALERT_DESCRIPTION_DECODE_ERROR = 50
ALERT_DESCRIPTION_DECOMPRESSION_FAILURE = 30
ALERT_DESCRIPTION_DECRYPT_ERROR = 51
ALERT_DESCRIPTION_HANDSHAKE_FAILURE = 40
ALERT_DESCRIPTION_ILLEGAL_PARAMETER = 47
ALERT_DESCRIPTION_INSUFFICIENT_SECURITY = 71
ALERT_DESCRIPTION_INTERNAL_ERROR = 80
ALERT_DESCRIPTION_NO_RENEGOTIATION = 100
ALERT_DESCRIPTION_PROTOCOL_VERSION = 70
ALERT_DESCRIPTION_RECORD_OVERFLOW = 22
ALERT_DESCRIPTION_UNEXPECTED_MESSAGE = 10
ALERT_DESCRIPTION_UNKNOWN_CA = 48
ALERT_DESCRIPTION_UNKNOWN_PSK_IDENTITY = 115
ALERT_DESCRIPTION_UNRECOGNIZED_NAME = 112
ALERT_DESCRIPTION_UNSUPPORTED_CERTIFICATE = 43
ALERT_DESCRIPTION_UNSUPPORTED_EXTENSION = 110
ALERT_DESCRIPTION_USER_CANCELLED = 90
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
ENCODING_DER = 2
ENCODING_PEM = 1
HOSTFLAG_ALWAYS_CHECK_SUBJECT = 1
HOSTFLAG_MULTI_LABEL_WILDCARDS = 8
HOSTFLAG_NEVER_CHECK_SUBJECT = 32
HOSTFLAG_NO_PARTIAL_WILDCARDS = 4
HOSTFLAG_NO_WILDCARDS = 2
HOSTFLAG_SINGLE_LABEL_SUBDOMAINS = 16
OP_ALL = 2147483728
OP_CIPHER_SERVER_PREFERENCE = 4194304
OP_ENABLE_MIDDLEBOX_COMPAT = 1048576
OP_IGNORE_UNEXPECTED_EOF = 128
OP_NO_COMPRESSION = 131072
OP_NO_RENEGOTIATION = 1073741824
OP_NO_SSLv2 = 0
OP_NO_SSLv3 = 33554432
OP_NO_TICKET = 16384
OP_NO_TLSv1 = 67108864
OP_NO_TLSv1_1 = 268435456
OP_NO_TLSv1_2 = 134217728
OP_NO_TLSv1_3 = 536870912
OP_SINGLE_DH_USE = 0
OP_SINGLE_ECDH_USE = 0
PROTOCOL_SSLv23 = 2
PROTOCOL_TLS = 2
PROTOCOL_TLS_CLIENT = 16
PROTOCOL_TLS_SERVER = 17
PROTOCOL_TLSv1 = 3
PROTOCOL_TLSv1_1 = 4
PROTOCOL_TLSv1_2 = 5
PROTO_MAXIMUM_SUPPORTED = -1
PROTO_MINIMUM_SUPPORTED = -2
PROTO_SSLv3 = 768
PROTO_TLSv1 = 769
PROTO_TLSv1_1 = 770
PROTO_TLSv1_2 = 771
PROTO_TLSv1_3 = 772
SSL_ERROR_EOF = 8
SSL_ERROR_INVALID_ERROR_CODE = 10
SSL_ERROR_SSL = 1
SSL_ERROR_SYSCALL = 5
SSL_ERROR_WANT_CONNECT = 7
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_ERROR_WANT_X509_LOOKUP = 4
SSL_ERROR_ZERO_RETURN = 6
VERIFY_ALLOW_PROXY_CERTS = 64
VERIFY_CRL_CHECK_CHAIN = 12
VERIFY_CRL_CHECK_LEAF = 4
VERIFY_DEFAULT = 0
VERIFY_X509_PARTIAL_CHAIN = 524288
VERIFY_X509_STRICT = 32
VERIFY_X509_TRUSTED_FIRST = 32768

_NET_INFO_VERSION, _NET_INFO_CIPHER, _NET_INFO_ALPN, _NET_INFO_CERT, _NET_INFO_CERT_DICT = 2, 3, 4, 5, 6
_TLS_VERIFY_FAILED, _TLS_FAILED = 1, 2
_WHERE = " (_ssl.c:992)"


class SSLError(OSError):
    """An error in the SSL implementation."""

    def __str__(self):
        if self.strerror and isinstance(self.strerror, str):
            return self.strerror
        return super().__str__()


class SSLZeroReturnError(SSLError):
    """SSL/TLS session closed cleanly."""


class SSLWantReadError(SSLError):
    """Non-blocking SSL socket needs to read more data."""


class SSLWantWriteError(SSLError):
    """Non-blocking SSL socket needs to write more data."""


class SSLSyscallError(SSLError):
    """System error when attempting SSL operation."""


class SSLEOFError(SSLError):
    """SSL/TLS connection terminated abruptly."""


class SSLCertVerificationError(SSLError, ValueError):
    """A certificate could not be verified."""


def _ssl_error(cls, code, reason, text):
    e = cls(code, "[SSL: %s] %s%s" % (reason, text, _WHERE) if reason else "[SSL] %s%s" % (text, _WHERE))
    e.library, e.reason = "SSL", reason
    return e


_OBJECTS = (
    (129, "serverAuth", "TLS Web Server Authentication", "1.3.6.1.5.5.7.3.1"),
    (130, "clientAuth", "TLS Web Client Authentication", "1.3.6.1.5.5.7.3.2"),
    (131, "codeSigning", "Code Signing", "1.3.6.1.5.5.7.3.3"),
    (132, "emailProtection", "E-mail Protection", "1.3.6.1.5.5.7.3.4"),
    (133, "timeStamping", "Time Stamping", "1.3.6.1.5.5.7.3.8"),
    (180, "OCSPSigning", "OCSP Signing", "1.3.6.1.5.5.7.3.9"),
)


def txt2obj(txt, name=False):
    for obj in _OBJECTS:
        if txt == obj[3] or name and txt in obj[1:3]:
            return obj
    raise ValueError("unknown object '%s'" % txt)


def nid2obj(nid):
    for obj in _OBJECTS:
        if obj[0] == nid:
            return obj
    raise ValueError("unknown NID %i" % nid)


def RAND_status():
    return True


def RAND_add(string, entropy):
    return None


def RAND_bytes(n):
    if n < 0:
        raise ValueError("num must be positive")
    return _os.urandom(n)


def RAND_pseudo_bytes(n):
    return RAND_bytes(n), True


# The system's CA bundle and folder as Debian names them (certifi.where() on
# Debian, requests' default): the guest sees a placeholder file there
# (hostabi/ABI.md "Guest file system"), and loading it or the folder means
# the host's trust store: the server's outbound_ca_file, else the system's.
DEFAULT_CAFILE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_CAPATH = "/etc/ssl/certs"
_DEFAULT_CAFILES = frozenset((DEFAULT_CAFILE, "/etc/ssl/cert.pem", "/usr/lib/ssl/cert.pem"))
_DEFAULT_CAPATHS = frozenset((DEFAULT_CAPATH, "/usr/lib/ssl/certs"))


def get_default_verify_paths():
    # What ssl.get_default_verify_paths() reports; loading either uses the
    # host's store (load_verify_locations).
    return ("SSL_CERT_FILE", DEFAULT_CAFILE, "SSL_CERT_DIR", DEFAULT_CAPATH)


def _is_default(path, defaults):
    """Whether path (str, bytes or PathLike) names one of defaults."""
    p = _os.fspath(path)
    if isinstance(p, bytes):
        p = p.decode("utf-8", "surrogateescape")
    return _os.path.normpath(p) in defaults


class MemoryBIO:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("ssl.MemoryBIO: TLS over memory buffers (SSLObject, asyncio) is not "
                                  "available in the sandbox; use a socket (TLS is done by the host)")


class SSLSession:
    def __init__(self, *args, **kwargs):
        raise TypeError("cannot create 'SSLSession' instances")


_PEM_BEGIN, _PEM_END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


def _pem_certs(text):
    """The PEM certificate blocks of text."""
    out, pos = [], 0
    while True:
        i = text.find(_PEM_BEGIN, pos)
        if i < 0:
            return out
        j = text.find(_PEM_END, i)
        if j < 0:
            return out
        out.append(text[i:j + len(_PEM_END)] + "\n")
        pos = j + len(_PEM_END)


def _no_certs():
    return _ssl_error(SSLError, 136, "NO_CERTIFICATE_OR_CRL_FOUND", "no certificate or crl found").with_traceback(None)


class _SSLContext:
    """The settings a handshake passes to the host."""

    def __new__(cls, protocol=PROTOCOL_TLS, *args, **kwargs):
        if protocol not in (PROTOCOL_TLS, PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER,
                            PROTOCOL_TLSv1, PROTOCOL_TLSv1_1, PROTOCOL_TLSv1_2):
            raise ValueError("invalid or unsupported protocol version %i" % protocol)
        self = object.__new__(cls)
        client = protocol == PROTOCOL_TLS_CLIENT
        self._protocol = protocol
        self._verify = CERT_REQUIRED if client else CERT_NONE
        self._check_hostname = client
        self._options = 2186412112
        self._verify_flags = VERIFY_X509_TRUSTED_FIRST
        self._min = {PROTOCOL_TLSv1: PROTO_TLSv1, PROTOCOL_TLSv1_1: PROTO_TLSv1_1,
                     PROTOCOL_TLSv1_2: PROTO_TLSv1_2}.get(protocol, PROTO_MINIMUM_SUPPORTED)
        self._max = {PROTOCOL_TLSv1: PROTO_TLSv1, PROTOCOL_TLSv1_1: PROTO_TLSv1_1,
                     PROTOCOL_TLSv1_2: PROTO_TLSv1_2}.get(protocol, PROTO_MAXIMUM_SUPPORTED)
        self._host_flags = HOSTFLAG_NEVER_CHECK_SUBJECT
        self._pem, self._der = [], []
        self._default_cas = False
        self._alpn = []
        self._msg_cb = None
        self.sni_callback = None
        self.keylog_filename = None
        self.post_handshake_auth = False
        self.num_tickets = 2
        self.security_level = 2
        return self

    protocol = property(lambda self: self._protocol)

    def _set_verify_mode(self, value):
        if value not in (CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED):
            raise ValueError("invalid value for verify_mode")
        if value == CERT_NONE and self._check_hostname:
            raise ValueError("Cannot set verify_mode to CERT_NONE when check_hostname is enabled.")
        self._verify = int(value)

    verify_mode = property(lambda self: self._verify, _set_verify_mode)

    def _set_check_hostname(self, value):
        value = bool(value)
        if value and self._verify == CERT_NONE:
            self._verify = CERT_REQUIRED
        self._check_hostname = value

    check_hostname = property(lambda self: self._check_hostname, _set_check_hostname)

    def _set_options(self, value):
        self._options = int(value)

    options = property(lambda self: self._options, _set_options)

    def _set_verify_flags(self, value):
        self._verify_flags = int(value)

    verify_flags = property(lambda self: self._verify_flags, _set_verify_flags)

    def _set_version(which):
        def set_(self, value):
            value = int(value)
            if value not in (PROTO_MINIMUM_SUPPORTED, PROTO_MAXIMUM_SUPPORTED, PROTO_TLSv1,
                             PROTO_TLSv1_1, PROTO_TLSv1_2, PROTO_TLSv1_3, PROTO_SSLv3):
                raise ValueError("Unsupported TLS/SSL version 0x%x" % value)
            if self._protocol not in (PROTOCOL_TLS, PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER):
                raise ValueError("The context's protocol doesn't support modification of highest and lowest version.")
            setattr(self, which, value)
        return set_

    minimum_version = property(lambda self: self._min, _set_version("_min"))
    maximum_version = property(lambda self: self._max, _set_version("_max"))
    del _set_version

    def _set_msg_cb(self, value):
        self._msg_cb = value

    _msg_callback = property(lambda self: self._msg_cb, _set_msg_cb)

    def set_ciphers(self, ciphers):
        # The host's crypto/tls chooses among its own secure suites.
        if not isinstance(ciphers, str) or not ciphers:
            raise _ssl_error(SSLError, 1, "NO_CIPHER_MATCH", "No cipher can be selected.")

    def get_ciphers(self):
        return []

    def set_ecdh_curve(self, name):
        pass

    def load_dh_params(self, path):
        pass

    def _set_alpn_protocols(self, protos):
        protos, out, i = bytes(protos), [], 0
        while i < len(protos):
            n = protos[i]
            out.append(protos[i + 1:i + 1 + n])
            i += 1 + n
        self._alpn = out

    def _set_npn_protocols(self, protos):
        raise NotImplementedError("NPN is not supported")

    def set_default_verify_paths(self):
        self._default_cas = True

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        if cafile is None and capath is None and cadata is None:
            raise TypeError("cafile, capath and cadata cannot be all omitted")
        # The system's bundle or folder (certifi.where(), requests' default)
        # is the host's store, not a file of the guest's.
        if cafile is not None and _is_default(cafile, _DEFAULT_CAFILES):
            self._default_cas, cafile = True, None
        if capath is not None and _is_default(capath, _DEFAULT_CAPATHS):
            self._default_cas, capath = True, None
        if cafile is not None:
            with open(_os.fspath(cafile), "rb") as f:
                certs = _pem_certs(f.read().decode("latin-1"))
            if not certs:
                raise _no_certs()
            self._pem.extend(certs)
        if capath is not None:
            for name in sorted(_os.listdir(_os.fspath(capath))):
                try:
                    with open(_os.path.join(_os.fspath(capath), name), "rb") as f:
                        self._pem.extend(_pem_certs(f.read().decode("latin-1")))
                except OSError:
                    pass
        if cadata is not None:
            if isinstance(cadata, str):
                certs = _pem_certs(cadata)
                if not certs:
                    raise _no_certs()
                self._pem.extend(certs)
            else:
                der = bytes(memoryview(cadata))
                if not der:
                    raise _no_certs()
                self._der.append(der)

    def load_cert_chain(self, certfile, keyfile=None, password=None):
        raise NotImplementedError("client certificates are not supported in the sandbox yet "
                                  "(TLS is done by the host)")

    def cert_store_stats(self):
        n = len(self._pem) + len(self._der)
        return {"x509_ca": n, "crl": 0, "x509": n}

    def get_ca_certs(self, binary_form=False):
        if not binary_form:
            return []
        import ssl
        return [ssl.PEM_cert_to_DER_cert(p) for p in self._pem] + list(self._der)

    def session_stats(self):
        return dict.fromkeys(("number", "connect", "connect_good", "connect_renegotiate", "accept",
                              "accept_good", "accept_renegotiate", "hits", "misses", "timeouts",
                              "cache_full"), 0)

    def _config(self, server_hostname):
        """The net_tls_handshake configuration: key NUL value NUL."""
        items = [("server_name", server_hostname or ""), ("verify", str(self._verify)),
                 ("check_hostname", "1" if self._check_hostname else "0"),
                 ("default_cas", "1" if self._default_cas else "0"),
                 ("min_version", str(self._min)), ("max_version", str(self._max))]
        items += [("ca_pem", p) for p in self._pem]
        items += [("ca_der_b64", _base64.b64encode(d).decode("ascii")) for d in self._der]
        out = bytearray()
        for k, v in items:
            out += k.encode("ascii") + b"\0" + v.encode("latin-1") + b"\0"
        for p in self._alpn:
            if b"\0" not in p:
                out += b"alpn\0" + p + b"\0"
        return bytes(out)

    def _wrap_socket(self, sock, server_side, server_hostname=None, owner=None, session=None):
        if server_side:
            raise ValueError("server-side TLS is not available in the sandbox (it makes outbound "
                             "connections only)")
        if self._check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        return _SSLSocket(self, sock, server_hostname, owner, session)

    def _wrap_bio(self, incoming, outgoing, server_side, server_hostname=None, owner=None, session=None):
        raise NotImplementedError("ssl.SSLObject: TLS over memory buffers is not available in the "
                                  "sandbox; use a socket (TLS is done by the host)")


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


class _SSLSocket:
    """The TLS state of one connection: the host's, after the handshake."""

    def __init__(self, context, sock, server_hostname, owner, session):
        self._context = context
        self._sock = sock
        self.server_hostname = server_hostname
        self.owner = owner
        self.server_side = False
        self.session = None
        self.session_reused = False
        self._done = False

    def _get_context(self):
        return self._context

    def _set_context(self, ctx):
        self._context = ctx

    context = property(_get_context, _set_context)

    def _handle(self):
        fd = self._sock.fileno()
        if fd < _FD_BASE:
            raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
        return fd - _FD_BASE

    def _timeout(self):
        return _ms(self._sock.gettimeout())

    def do_handshake(self):
        if self._done:
            return
        rc = _h.net_tls_handshake(self._handle(), self._context._config(self.server_hostname), self._timeout())
        if rc == 0:
            self._done = True
            return
        msg = _h.net_last_error()
        if rc == _TLS_VERIFY_FAILED:
            code, _, text = msg.partition(" ")
            e = _ssl_error(SSLCertVerificationError, 1, "CERTIFICATE_VERIFY_FAILED", "certificate verify failed: " + text)
            e.verify_code, e.verify_message = int(code), text
            raise e
        if rc == _TLS_FAILED:
            if msg.startswith("EOF occurred"):
                raise _ssl_error(SSLEOFError, SSL_ERROR_EOF, "UNEXPECTED_EOF_WHILE_READING", msg)
            raise _ssl_error(SSLError, SSL_ERROR_SSL, "", msg)
        if -rc == _errno.ETIMEDOUT:
            raise TimeoutError("_ssl.c:990: The handshake operation timed out")
        if -rc == _errno.EAGAIN:
            raise _ssl_error(SSLWantReadError, SSL_ERROR_WANT_READ, "", "The operation did not complete (read)")
        raise OSError(-rc, msg)

    def read(self, len=1024, buffer=None):
        if not self._done:
            self.do_handshake()
        if buffer is not None:
            view = memoryview(buffer).cast("B")
            if len and len < view.nbytes:
                view = view[:len]
        else:
            if len < 0:
                raise ValueError("size should not be negative")
            view = memoryview(bytearray(len))
        rc = _h.net_recv(self._handle(), view, self._timeout(), 0) if view.nbytes else 0
        if rc < 0:
            if -rc == _errno.EAGAIN:
                raise _ssl_error(SSLWantReadError, SSL_ERROR_WANT_READ, "", "The operation did not complete (read)")
            if -rc == _errno.ETIMEDOUT:
                raise TimeoutError("The read operation timed out")
            raise OSError(-rc, _h.net_last_error())
        if buffer is not None:
            return rc
        return bytes(view[:rc])

    def write(self, data):
        if not self._done:
            self.do_handshake()
        rc = _h.net_send(self._handle(), data, self._timeout())
        if rc < 0:
            if -rc == _errno.EAGAIN:
                raise _ssl_error(SSLWantWriteError, SSL_ERROR_WANT_WRITE, "", "The operation did not complete (write)")
            if -rc == _errno.ETIMEDOUT:
                raise TimeoutError("The write operation timed out")
            raise OSError(-rc, _h.net_last_error())
        return rc

    def pending(self):
        # Decrypted bytes wait in the host, where select and poll see them.
        return 0

    def _info(self, what):
        if not self._done:
            return None
        out = _h.net_info(self._handle(), what)
        if isinstance(out, int):
            raise OSError(-out, _h.net_last_error())
        return out

    def getpeercert(self, binary_form=False):
        if not self._done:
            raise ValueError("handshake not done yet")
        if binary_form:
            return self._info(_NET_INFO_CERT) or None
        d = _json.loads(self._info(_NET_INFO_CERT_DICT))
        return {k: _tuples(v) for k, v in d.items()}

    def cipher(self):
        info = self._info(_NET_INFO_CIPHER)
        if not info:
            return None
        name, version, bits = info.decode("ascii").split("\0")
        return (name, version, int(bits))

    def shared_ciphers(self):
        return None

    def compression(self):
        return None

    def version(self):
        info = self._info(_NET_INFO_VERSION)
        return info.decode("ascii") if info else None

    def selected_alpn_protocol(self):
        info = self._info(_NET_INFO_ALPN)
        return info.decode("ascii") if info else None

    def selected_npn_protocol(self):
        return None

    def get_channel_binding(self, cb_type="tls-unique"):
        if cb_type != "tls-unique":
            raise ValueError("Unsupported channel binding type")
        return None

    def shutdown(self):
        raise NotImplementedError("SSLSocket.unwrap: going back to plaintext is not supported in the sandbox")

    def verify_client_post_handshake(self):
        raise _ssl_error(SSLError, SSL_ERROR_SSL, "WRONG_SSL_VERSION", "post-handshake authentication is for servers")
