"""select for the sandbox: select() and poll() that also wait on the host's
outbound connections (the sockets of _wsgi_socket, whose file numbers start
at FD_BASE). The bootstrap installs it as sys.modules["select"]; selectors
then builds PollSelector and SelectSelector on it unchanged. Other file
descriptors go to the builtin select module as before (WASI files are
always ready).
"""

import _wsgi_host as _h
import errno as _errno
import select as _builtin
import struct as _struct
import time as _time

from select import *  # noqa: F401,F403 the builtin's constants and error

from _wsgi_socket import FD_BASE as _FD_BASE

# ABI.md "net_poll": the host's event bits (Linux's, like struct pollfd).
_IN, _OUT, _ERR, _HUP, _NVAL = 0x1, 0x4, 0x8, 0x10, 0x20
_B = _builtin
_TO_HOST = ((_B.POLLIN, _IN), (_B.POLLRDNORM, _IN), (_B.POLLPRI, _IN), (_B.POLLOUT, _OUT), (_B.POLLWRNORM, _OUT))
_FROM_HOST = ((_IN, _B.POLLIN), (_OUT, _B.POLLOUT), (_ERR, _B.POLLERR), (_HUP, _B.POLLHUP), (_NVAL, _B.POLLNVAL))
_ENTRY = _struct.Struct("<ihh")
MAX_HANDLES = 64


def _fd(obj):
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = int(obj.fileno())
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
    if fd < 0:
        raise ValueError("file descriptor cannot be a negative integer (%d)" % fd)
    return fd


def _host_poll(wanted, timeout_ms):
    """wanted: {fd: host events}; returns {fd: host revents} of the ready
    ones, waiting at most timeout_ms (negative: no limit)."""
    fds = list(wanted)
    if len(fds) > MAX_HANDLES:
        raise ValueError("at most %d sockets of the sandbox in one select or poll" % MAX_HANDLES)
    buf = bytearray(_ENTRY.size * len(fds))
    for i, fd in enumerate(fds):
        _ENTRY.pack_into(buf, i * _ENTRY.size, fd - _FD_BASE, wanted[fd], 0)
    rc = _h.net_poll(buf, timeout_ms)
    if rc < 0:
        raise OSError(-rc, _h.net_last_error())
    out = {}
    for i, fd in enumerate(fds):
        rev = _ENTRY.unpack_from(buf, i * _ENTRY.size)[2] & 0xFFFF
        if rev:
            out[fd] = rev
    return out


def select(rlist, wlist, xlist, timeout=None):
    """select.select, for the sandbox's sockets and the builtin's files."""
    if timeout is not None:
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    rl, wl, xl = list(rlist), list(wlist), list(xlist)
    r_fd = [(_fd(o), o) for o in rl]
    w_fd = [(_fd(o), o) for o in wl]
    x_fd = [(_fd(o), o) for o in xl]
    if all(fd < _FD_BASE for fd, _ in r_fd + w_fd + x_fd):
        return _builtin.select(rl, wl, xl, timeout)
    others = ([o for fd, o in r_fd if fd < _FD_BASE], [o for fd, o in w_fd if fd < _FD_BASE],
              [o for fd, o in x_fd if fd < _FD_BASE])
    wanted = {}
    for fd, _ in r_fd:
        if fd >= _FD_BASE:
            wanted[fd] = wanted.get(fd, 0) | _IN
    for fd, _ in w_fd:
        if fd >= _FD_BASE:
            wanted[fd] = wanted.get(fd, 0) | _OUT
    ready_other = ([], [], [])
    if any(others):
        ready_other = _builtin.select(*others, 0)
    ms = -1 if timeout is None else min(int(timeout * 1000 + 0.999), 0x7FFFFFFF)
    if any(ready_other):
        ms = 0
    got = _host_poll(wanted, ms) if wanted else {}
    if not wanted and not any(ready_other) and ms != 0:
        _time.sleep(timeout if timeout is not None else 0)
    r = [o for fd, o in r_fd if fd >= _FD_BASE and got.get(fd, 0) & (_IN | _ERR | _HUP | _NVAL)]
    w = [o for fd, o in w_fd if fd >= _FD_BASE and got.get(fd, 0) & (_OUT | _ERR | _NVAL)]
    return (ready_other[0] + r, ready_other[1] + w, list(ready_other[2]))


class poll:
    """select.poll, for the sandbox's sockets and the builtin's files."""

    def __init__(self):
        self._fds = {}

    def register(self, fd, eventmask=_B.POLLIN | _B.POLLPRI | _B.POLLOUT):
        self._fds[_fd(fd)] = eventmask & 0xFFFF

    def modify(self, fd, eventmask):
        fd = _fd(fd)
        if fd not in self._fds:
            raise FileNotFoundError(_errno.ENOENT, "No such file or directory")
        self._fds[fd] = eventmask & 0xFFFF

    def unregister(self, fd):
        del self._fds[_fd(fd)]

    def poll(self, timeout=None):
        if timeout is None or timeout < 0:
            ms = -1
        else:
            ms = min(int(timeout + 0.999), 0x7FFFFFFF)
        mine = {fd: ev for fd, ev in self._fds.items() if fd >= _FD_BASE}
        result = []
        if len(mine) != len(self._fds):
            p = _builtin.poll()
            for fd, ev in self._fds.items():
                if fd < _FD_BASE:
                    p.register(fd, ev)
            result = p.poll(0 if mine else timeout)
            if result:
                ms = 0
        if mine:
            wanted = {}
            for fd, ev in mine.items():
                wanted[fd] = 0
                for py, h in _TO_HOST:
                    if ev & py:
                        wanted[fd] |= h
            for fd, rev in _host_poll(wanted, ms).items():
                out = 0
                for h, py in _FROM_HOST:
                    if rev & h:
                        out |= py
                out &= mine[fd] | _B.POLLERR | _B.POLLHUP | _B.POLLNVAL
                if out:
                    result.append((fd, out))
        return result
