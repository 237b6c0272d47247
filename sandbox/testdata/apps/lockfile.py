"""Each request takes a lock file in the data folder the way filelock's
UnixFileLock and portalocker do (os.open, then fcntl.flock with LOCK_NB,
retrying on BlockingIOError), adds one to a counter file under it, and
answers the new count."""
import errno
import fcntl
import os
import time

DATA = os.environ["WSGI_WASM_DATA_DIR"]
LOCK = os.path.join(DATA, "counter.lock")
COUNTER = os.path.join(DATA, "counter.txt")


def acquire():
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    deadline = time.monotonic() + 5
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                os.close(fd)
                raise
            time.sleep(0.01)


def release(fd):
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def app(environ, start_response):
    fd = acquire()
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        try:
            with open(COUNTER) as f:
                n = int(f.read())
        except FileNotFoundError:
            n = 0
        with open(COUNTER, "w") as f:
            f.write(str(n + 1))
            fcntl.lockf(f, fcntl.LOCK_EX)
    finally:
        release(fd)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % (n + 1)]
