"""_socket for the sandbox: outbound TCP connections made by the host.

The bootstrap installs this module as sys.modules["_socket"] before anything
imports socket, so the standard socket.py (and everything above it) runs on
it unchanged. A socket here is a handle in the host's connection table
(hostabi/ABI.md "Outbound connections"); its fileno() is that handle plus
FD_BASE, which the select shim (_wsgi_select) recognises. Names are never
resolved in the guest: getaddrinfo gives the name back and the host's
Dialer resolves it at connect, after its policy allowed it. Binding,
listening, accepting and UDP are refused with an OSError.
"""

import _socket as _builtin
import _wsgi_host as _h
import errno as _errno
import time as _time

from _socket import *  # noqa: F401,F403 the builtin's constants and helpers

# The builtin's constants lack these; Linux's values, so code that compares
# them with numbers it knows gets what it expects.
SO_DEBUG, SO_REUSEADDR, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 1, 2, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_LINGER = 7, 8, 9, 10, 13
SO_REUSEPORT, SO_RCVLOWAT, SO_SNDLOWAT, SO_RCVTIMEO, SO_SNDTIMEO = 15, 18, 19, 20, 21
MSG_OOB, MSG_DONTROUTE, MSG_DONTWAIT, MSG_EOR, MSG_NOSIGNAL = 0x1, 0x4, 0x40, 0x80, 0x4000

FD_BASE = 1 << 20  # fileno() of handle h is FD_BASE + h
_INFO_PEER, _INFO_LOCAL = 0, 1
_NOT_HERE = "in the sandbox only outbound TCP connections exist (no bind, listen, accept or UDP)"

error = OSError
timeout = TimeoutError
_GAI_NONAME = getattr(_builtin, "EAI_NONAME", -2)


def _oserror(rc, what=""):
    """The exception of a net_* call that returned rc (-errno), with the
    host's message: OSError picks the subclass from the errno."""
    code = -rc
    msg = _h.net_last_error() or _errno.errorcode.get(code, "error")
    if code == _errno.ETIMEDOUT:
        return TimeoutError("timed out") if msg == "timed out" else TimeoutError(code, msg)
    if code == _errno.ENOENT and what == "connect":
        return gaierror(_GAI_NONAME, msg)
    return OSError(code, msg)


def _ms(timeout):
    if timeout is None:
        return -1
    return min(int(timeout * 1000 + 0.999), 0x7FFFFFFF)


def _is_ipv6(host):
    if ":" not in host:
        return False
    import ipaddress
    try:
        ipaddress.IPv6Address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _host_text(host):
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii")
    if not isinstance(host, str):
        raise TypeError("str, bytes or bytearray expected, not %s" % type(host).__name__)
    try:
        host.encode("ascii")
        return host
    except UnicodeEncodeError:
        return host.encode("idna").decode("ascii")


class socket:
    """A TCP client socket whose connection the host holds."""

    __slots__ = ("_fd", "_family", "_type", "_proto", "_timeout", "_opts")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        self._fd = -1
        if fileno is not None:
            fd = fileno if isinstance(fileno, int) else fileno.fileno()
            # -1 is the fileno() of a socket not connected yet, which ssl.py
            # adopts when it wraps one (wrap_socket, then connect).
            if fd != -1 and fd < FD_BASE:
                raise OSError(_errno.EBADF, "not a socket of the sandbox: %d" % fd)
            self._fd = fd - FD_BASE if fd != -1 else -1
        family = AF_INET if family == -1 else family
        type = SOCK_STREAM if type == -1 else type
        if family not in (AF_INET, AF_INET6):
            raise OSError(_errno.EAFNOSUPPORT, "address family %s: %s" % (family, _NOT_HERE))
        if type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC) != SOCK_STREAM:
            raise OSError(_errno.EPROTONOSUPPORT, "socket type %s: %s" % (type, _NOT_HERE))
        self._family, self._type = family, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        self._proto = IPPROTO_TCP if proto in (-1, 0) else proto
        self._timeout = 0.0 if type & SOCK_NONBLOCK else getdefaulttimeout()
        self._opts = {}

    family = property(lambda self: self._family, doc="the socket family")
    type = property(lambda self: self._type, doc="the socket type")
    proto = property(lambda self: self._proto, doc="the socket protocol")
    timeout = property(lambda self: self._timeout, doc="the timeout in seconds, or None")

    def __repr__(self):
        return "<socket object, fd=%d, family=%d, type=%d, proto=%d>" % (
            self.fileno(), self._family, self._type, self._proto)

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            _h.net_close(self._fd)
            self._fd = -1

    def _handle(self):
        if self._fd < 0:
            raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
        return self._fd

    def fileno(self):
        return FD_BASE + self._fd if self._fd >= 0 else -1

    def detach(self):
        fd, self._fd = self.fileno(), -1
        return fd

    def close(self):
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            _h.net_close(fd)

    def settimeout(self, value):
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def getblocking(self):
        return self._timeout != 0.0

    def connect(self, address):
        if self._fd >= 0:
            raise OSError(_errno.EISCONN, "Transport endpoint is already connected")
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError("%s address must be a tuple (host, port)" % ("AF_INET6" if self._family == AF_INET6 else "AF_INET"))
        host, port = _host_text(address[0]), address[1]
        if not isinstance(port, int):
            raise TypeError("'%s' object cannot be interpreted as an integer" % type(port).__name__)
        if not 0 <= port <= 65535:
            raise OverflowError("connect(): port must be 0-65535.")
        rc = _h.net_connect(host.encode("ascii"), port, _ms(self._timeout))
        if rc < 0:
            raise _oserror(rc, "connect")
        self._fd = rc

    def connect_ex(self, address):
        try:
            self.connect(address)
        except gaierror:
            raise
        except OSError as e:
            return e.errno or _errno.EIO
        return 0

    def bind(self, address):
        raise PermissionError(_errno.EPERM, "bind: " + _NOT_HERE)

    def listen(self, backlog=0):
        raise PermissionError(_errno.EPERM, "listen: " + _NOT_HERE)

    def _accept(self):
        raise PermissionError(_errno.EPERM, "accept: " + _NOT_HERE)

    accept = _accept

    def send(self, data, flags=0):
        h = self._handle()
        timeout = self._timeout
        if flags & MSG_DONTWAIT:
            timeout = 0.0
        rc = _h.net_send(h, data, _ms(timeout))
        if rc < 0:
            raise _oserror(rc)
        return rc

    def sendall(self, data, flags=0):
        view = memoryview(data).cast("B")
        end = None if self._timeout is None else _time.monotonic() + self._timeout
        sent = 0
        while sent < len(view):
            h = self._handle()
            left = None if end is None else max(0.0, end - _time.monotonic())
            rc = _h.net_send(h, view[sent:], _ms(left))
            if rc < 0:
                raise _oserror(rc)
            sent += rc

    def sendto(self, data, flags_or_addr, addr=None):
        raise OSError(_errno.EISCONN, "sendto: " + _NOT_HERE)

    def recv_into(self, buffer, nbytes=0, flags=0):
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        view = memoryview(buffer).cast("B")
        if nbytes:
            view = view[:nbytes]
        timeout = 0.0 if flags & MSG_DONTWAIT else self._timeout
        rc = _h.net_recv(self._handle(), view, _ms(timeout), 1 if flags & MSG_PEEK else 0)
        if rc < 0:
            raise _oserror(rc)
        return rc

    def recv(self, bufsize, flags=0):
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        return bytes(buf[:n]) if n != bufsize else bytes(buf)

    def recvfrom(self, bufsize, flags=0):
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self.recv_into(buffer, nbytes, flags), None

    def shutdown(self, how):
        rc = _h.net_shutdown(self._handle(), how)
        if rc < 0:
            raise _oserror(rc)

    def _address(self, what):
        if self._fd < 0:
            if what == _INFO_LOCAL:
                return ("::", 0, 0, 0) if self._family == AF_INET6 else ("0.0.0.0", 0)
            raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
        out = _h.net_info(self._fd, what)
        if isinstance(out, int):
            raise _oserror(out)
        host, _, port = out.decode("ascii").rpartition(":")
        host = host.strip("[]")
        if self._family == AF_INET6 or ":" in host:
            return (host, int(port), 0, 0)
        return (host, int(port))

    def getpeername(self):
        return self._address(_INFO_PEER)

    def getsockname(self):
        return self._address(_INFO_LOCAL)

    def setsockopt(self, level, optname, value, optlen=None):
        # Go's connections have TCP_NODELAY and keep-alive on already; the
        # rest is recorded so that getsockopt returns it.
        self._opts[(level, optname)] = value

    def getsockopt(self, level, optname, buflen=None):
        if level == SOL_SOCKET and optname == SO_TYPE:
            value = self._type
        elif level == SOL_SOCKET and optname == SO_ERROR:
            value = 0
        elif (level, optname) == (IPPROTO_TCP, TCP_NODELAY) or (level, optname) == (SOL_SOCKET, SO_KEEPALIVE):
            value = self._opts.get((level, optname), 1)
        else:
            value = self._opts.get((level, optname), 0)
        if buflen is None:
            return value if isinstance(value, int) else int.from_bytes(bytes(value)[:4], "little")
        if isinstance(value, int):
            value = value.to_bytes(4, "little", signed=True)
        return bytes(value)[:buflen]

    def dup(self):
        raise OSError(_errno.ENOTSUP, "dup: a connection of the sandbox cannot be duplicated")

    def __getstate__(self):
        raise TypeError("cannot pickle %r object" % type(self).__name__)


SocketType = socket


def close(fd):
    if fd >= FD_BASE:
        _h.net_close(fd - FD_BASE)
    else:
        _builtin.close(fd)


def dup(fd):
    raise OSError(_errno.ENOTSUP, "dup: a connection of the sandbox cannot be duplicated")


_SERVICES = {"http": 80, "https": 443, "ftp": 21, "smtp": 25, "submission": 587, "smtps": 465,
             "imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995, "domain": 53, "ssh": 22,
             "postgresql": 5432, "mysql": 3306, "redis": 6379, "ldap": 389, "ldaps": 636,
             "amqp": 5672, "memcache": 11211}


def getservbyname(name, proto=None):
    try:
        return _SERVICES[name]
    except KeyError:
        raise OSError("service/proto not found") from None


def getservbyport(port, proto=None):
    for name, p in _SERVICES.items():
        if p == port:
            return name
    raise OSError("port/proto not found")


def getprotobyname(name):
    try:
        return {"ip": 0, "icmp": 1, "tcp": 6, "udp": 17, "ipv6": 41}[name]
    except KeyError:
        raise OSError("protocol not found") from None


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """The address as given: the host resolves names at connect, only for
    names its policy allows (no DNS from the guest)."""
    if isinstance(port, (bytes, bytearray)):
        port = bytes(port).decode("ascii")
    if port is None:
        port = 0
    elif isinstance(port, str):
        if port.isdigit():
            port = int(port)
        elif port in _SERVICES:
            port = _SERVICES[port]
        else:
            raise gaierror(getattr(_builtin, "EAI_SERVICE", -8), "Servname not supported for ai_socktype")
    elif not isinstance(port, int):
        raise OSError("Int or String expected")
    if host is None:
        host = "::1" if family == AF_INET6 else "127.0.0.1"
    host = _host_text(host)
    if not host:
        raise gaierror(_GAI_NONAME, "Name or service not known")
    if type not in (0, SOCK_STREAM):
        raise gaierror(getattr(_builtin, "EAI_SOCKTYPE", -7), "ai_socktype not supported: " + _NOT_HERE)
    v6 = _is_ipv6(host)
    if v6 and family == AF_INET or not v6 and family == AF_INET6 and _is_ipv4(host):
        raise gaierror(getattr(_builtin, "EAI_ADDRFAMILY", -9), "Address family for hostname not supported")
    if v6 or family == AF_INET6:
        return [(AF_INET6, SOCK_STREAM, IPPROTO_TCP, "", (host, port, 0, 0))]
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


def _is_ipv4(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def gethostname():
    return "localhost"


def gethostbyname(hostname):
    hostname = _host_text(hostname)
    if _is_ipv4(hostname):
        return hostname
    if hostname == "localhost":
        return "127.0.0.1"
    raise gaierror(_GAI_NONAME, "%s: names are resolved by the host at connect, not in the sandbox" % hostname)


def gethostbyname_ex(hostname):
    return (hostname, [], [gethostbyname(hostname)])


def gethostbyaddr(ip):
    raise herror(1, "Unknown host (no reverse lookups in the sandbox)")


def getnameinfo(sockaddr, flags):
    host, port = sockaddr[0], sockaddr[1]
    return (host, str(port))


def socketpair(family=None, type=SOCK_STREAM, proto=0):
    raise OSError(_errno.ENOTSUP, "socketpair: " + _NOT_HERE)


def if_nameindex():
    return []


def if_nametoindex(name):
    raise OSError("no interface with this name")


def if_indextoname(index):
    raise OSError("no interface with this index")


def sethostname(name):
    raise PermissionError(_errno.EPERM, "sethostname: not in the sandbox")
