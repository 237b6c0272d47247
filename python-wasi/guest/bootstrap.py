"""The wsgi-wasm bootstrap: PEP 3333 in the guest, on top of _wsgi_host.

Compiled into the reactor (link.sh embeds this file). wsgi_init_base calls
init_base() once, when CPython has started; wsgi_init_app then calls init(),
maybe in an instance restored from a base image made with other arguments and
environment, which imports the tenant's app and returns handle (wsgi_init does
both). wsgi_handle calls handle once per request; it returns one of the
RESULT_* codes (hostabi/ABI.md "wsgi_handle").
"""

import importlib
import sys
import traceback

import _wsgi_host

# Outbound connections go through the host (hostabi/ABI.md "Outbound
# connections"): its _socket and select stand in for the builtin ones before
# anything imports socket, selectors or ssl (whose _ssl is ours too, found in
# the stdlib zip).
if "socket" in sys.modules or "selectors" in sys.modules:
    raise ImportError("socket was imported before the bootstrap could install the sandbox's _socket")
import _wsgi_socket  # noqa: E402
import _wsgi_select  # noqa: E402
sys.modules["_socket"] = _wsgi_socket
sys.modules["select"] = _wsgi_select

# hashlib.pbkdf2_hmac by the host (hostabi/ABI.md "Key derivation"), before
# an app can take a reference to CPython's pure-Python one.
import _wsgi_hashlib  # noqa: E402
_wsgi_hashlib.install()

RESULT_OK = 0  # the response was sent
RESULT_APP_ERROR = 1  # the app raised; a 500 was sent if nothing had been
RESULT_CLIENT_GONE = 2  # the client went away; the app's iterable was closed
RESULT_REPLACE = 4  # the app failed so that this instance must be dropped

LOG_INFO, LOG_ERROR, LOG_WARNING, LOG_DEBUG = 0, 1, 2, 3

_app = None


class ErrorStream:
    """wsgi.errors: text lines to the tenant's error log on the host."""

    def __init__(self, level=LOG_WARNING):
        self._level = level
        self._pending = ""

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("wsgi.errors.write() takes str, not %s" % type(s).__name__)
        self._pending += s
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            _wsgi_host.log(self._level, lines)
        return len(s)

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        if self._pending:
            _wsgi_host.log(self._level, self._pending)
            self._pending = ""

    def writable(self):
        return True


class Input:
    """wsgi.input: the request body, pulled from the host as the app reads,
    never past CONTENT_LENGTH (or the end of a chunked body)."""

    CHUNK = 65536

    def __init__(self, length):
        self._left = length  # None: read until the host says the body ended
        self._buf = b""
        self._eof = length == 0

    def _fill(self, want):
        """Pull at most want more bytes from the host into the buffer."""
        if self._eof:
            return False
        if self._left is not None:
            want = min(want, self._left)
        if want <= 0:
            self._eof = True
            return False
        chunk = bytearray(want)
        n = _wsgi_host.readinto(chunk)
        if n == 0:
            self._eof = True
            return False
        if self._left is not None:
            self._left -= n
            if self._left == 0:
                self._eof = True
        self._buf += bytes(memoryview(chunk)[:n])
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fill(self.CHUNK):
                pass
            data, self._buf = self._buf, b""
            return data
        while len(self._buf) < size and self._fill(max(size - len(self._buf), 1)):
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size=-1):
        limit = size if size is not None and size >= 0 else None
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0 and (limit is None or nl < limit):
                end = nl + 1
                break
            if limit is not None and len(self._buf) >= limit:
                end = limit
                break
            if not self._fill(self.CHUNK if limit is None else limit - len(self._buf)):
                end = len(self._buf) if limit is None else min(limit, len(self._buf))
                break
        data, self._buf = self._buf[:end], self._buf[end:]
        return data

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


# What every request's environ holds besides the host's variables (and its
# wsgi.input). wsgi.errors is one stream for every request of the instance:
# handle() flushes it when a request ends, so nothing of one request is left
# in it for the next.
_errors = ErrorStream()
_base_environ = {
    "wsgi.version": (1, 0),
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.errors": _errors,
    "wsgi.file_wrapper": FileWrapper,
}


# HeaderError: the app's status or headers break PEP 3333 or HTTP.
# encode_start(status, headers) checks them and encodes them for start();
# Response() is start_response and write() for one request. All three are
# in C (wsgi_host.c), to keep the per-request glue small; the host checks
# the status and headers again.
HeaderError = _wsgi_host.HeaderError
encode_start = _wsgi_host.encode_start
Response = _wsgi_host.Response


def _log_exception(prefix):
    _wsgi_host.log(LOG_ERROR, prefix + "\n" + traceback.format_exc().rstrip("\n"))


def _send_error(status, message):
    body = message.encode()
    _wsgi_host.start(encode_start(status, [("Content-Type", "text/plain; charset=utf-8"),
                                           ("Content-Length", str(len(body)))]))
    _wsgi_host.write(body)


def handle():
    """Serve the current request; returns a RESULT_* code."""
    environ = _wsgi_host.environ(_base_environ)  # wsgi.url_scheme "http" if the host sent none
    length = environ.get("CONTENT_LENGTH")
    environ["wsgi.input"] = Input(int(length) if length else None)
    environ["wsgi.input_terminated"] = not length
    response = Response()
    result = None
    try:
        result = _app(environ, response.start_response)
        for chunk in result:
            response.write(chunk)
        response.send_headers()
        return RESULT_OK
    except OSError as exc:
        if str(exc).startswith(("response body:", "request body:")):
            return RESULT_CLIENT_GONE
        return _fail(response, "unhandled exception in app")
    except (SystemExit, MemoryError, RecursionError, KeyboardInterrupt):
        _fail(response, "app ended the interpreter's usefulness")
        return RESULT_REPLACE
    except BaseException:
        return _fail(response, "unhandled exception in app")
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except BaseException:
                _log_exception("exception in the app iterable's close()")
        if _errors._pending:
            _errors.flush()


def _fail(response, why):
    _log_exception(why)
    if not response.sent:
        try:
            _send_error("500 Internal Server Error", "Internal Server Error\n")
        except BaseException:
            pass
    return RESULT_APP_ERROR


def _load_app(spec):
    """Import 'module:callable' as gunicorn does; callable may be a dotted
    attribute path or a call of a factory with literal arguments."""
    import ast

    module_name, _, expr = spec.partition(":")
    module = importlib.import_module(module_name)
    expr = expr or "application"
    node = ast.parse(expr, mode="eval").body
    is_call = isinstance(node, ast.Call)
    args, kwargs = [], {}
    if is_call:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError("app %r: expected module:name, module:name.attr or module:factory(...)" % spec)
    names.append(node.id)
    obj = module
    for name in reversed(names):
        obj = getattr(obj, name)
    if is_call:
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise TypeError("app %r is not callable" % spec)
    return obj


_seeded = []  # random.Random instances that existed when the snapshot was made


def before_snapshot():
    """Ready the imported app for a snapshot (hostabi/ABI.md "Snapshots").

    Collects garbage, then freezes every object that survives into the
    permanent generation, so that later collections in a restored instance
    do not walk, and so write to, the pages shared with the image. Remembers
    the random generators seeded at import so that after_restore can reseed
    them; without that every restored instance would draw the same numbers.
    Django's database connections are closed (they reopen on first use), as
    before a fork under gunicorn's preload: a restored instance would not
    have their files."""
    import gc

    if "django.db" in sys.modules:
        sys.modules["django.db"].connections.close_all()
    _drop_metadata_caches()
    gc.collect()
    _refuse_open_files(gc)
    random = sys.modules.get("random")
    if random is not None:
        # Objects frozen for a base image are not in get_objects(): the
        # generators found then stay in the list.
        known = set(map(id, _seeded))
        _seeded.extend(o for o in gc.get_objects()
                       if isinstance(o, random.Random) and not isinstance(o, random.SystemRandom)
                       and id(o) not in known)
    gc.freeze()


def _drop_metadata_caches():
    """importlib.metadata keeps a zipfile.Path, and so an open file, of
    every zip on sys.path it has searched (the stdlib's among them) in the
    caches of its FastPath; entry_points() at import (Pygments does it)
    would refuse the snapshot. Emptied, the next search opens the zip again."""
    md = sys.modules.get("importlib.metadata")
    fast = getattr(md, "FastPath", None)
    for cached in (getattr(fast, "__new__", None), getattr(fast, "lookup", None)):
        clear = getattr(cached, "cache_clear", None)
        if clear is not None:
            clear()


def _refuse_open_files(gc):
    """Refuse the snapshot, naming the file, when a Python file object is
    still open after the import: a restored instance would not have it.
    (A descriptor without a Python object, from os.open, is caught after
    this by the reactor, by number.)"""
    import io

    for o in gc.get_objects():
        if isinstance(o, io.FileIO) and not o.closed and o.fileno() > 2:
            raise RuntimeError(
                "snapshot refused: %r is open after the app's import (open it on first use, "
                "or close it before the import ends)" % (o.name,))


def after_restore():
    """First call in an instance restored from a snapshot: reseed, from the
    host's random source, every generator that was in the image."""
    for rng in _seeded:
        rng.seed()


# The standard library modules that init_base imports, so that every
# tenant's image starts with them (hostabi/ABI.md "Base images"): those
# gunicorn has imported by the time it imports an app, so that an app finds
# loaded what it would find loaded under gunicorn, plus what the frameworks
# of the examples import from the standard library. Left out: modules that
# read the environment when imported (zoneinfo reads PYTHONTZPATH), site and
# sysconfig, and test-only ones.
SHARED_MODULES = (
    "abc", "argparse", "array", "ast", "asyncio", "atexit", "base64",
    "binascii", "bisect", "bz2", "calendar", "codecs", "collections",
    "collections.abc", "concurrent.futures", "configparser", "contextlib",
    "contextvars", "copy", "copyreg", "dataclasses", "datetime", "decimal",
    "difflib", "dis", "email", "email.base64mime", "email.charset",
    "email.encoders", "email.errors", "email.feedparser", "email.generator",
    "email.header", "email.headerregistry", "email.message",
    "email.mime.multipart", "email.mime.text", "email.parser", "email.policy",
    "email.quoprimime", "email.utils", "enum", "errno", "fcntl", "fnmatch",
    "fractions", "functools", "genericpath", "gettext", "glob", "grp", "gzip",
    "hashlib", "heapq", "hmac", "html", "html.entities", "html.parser",
    "http", "http.client", "http.cookiejar", "http.cookies", "http.server",
    "importlib", "importlib.machinery", "importlib.resources",
    "importlib.resources.abc", "importlib.util", "inspect", "io", "ipaddress",
    "itertools", "json", "keyword", "linecache", "locale", "logging",
    "logging.config", "logging.handlers", "lzma", "marshal", "math",
    "mimetypes", "ntpath", "numbers", "opcode", "operator", "os", "os.path",
    "pathlib", "pickle", "pkgutil", "platform", "plistlib", "posix",
    "posixpath", "pprint", "pwd", "pyexpat", "queue", "quopri", "random",
    "re", "reprlib", "runpy",
    "secrets", "select", "selectors", "shlex", "shutil", "signal", "socket",
    "socketserver", "stat", "statistics", "string", "struct", "subprocess",
    "tempfile", "textwrap", "threading", "time", "token", "tokenize",
    "traceback", "types", "typing", "unicodedata", "urllib", "urllib.error",
    "urllib.parse", "urllib.request", "urllib.response", "uuid", "warnings",
    "weakref", "xml", "xml.parsers", "xml.parsers.expat",
    "xml.parsers.expat.errors", "xml.parsers.expat.model", "zipfile",
    "zipimport", "zlib",
)


def init_base(shared):
    """Ready what every tenant shares: standard streams to the host's log,
    and, if shared (for a base image), the standard library modules of
    SHARED_MODULES. One that this build lacks is skipped: the app's own
    import of it fails as it would."""
    sys.stdout = ErrorStream(LOG_INFO)
    sys.stderr = ErrorStream(LOG_WARNING)
    if not shared:
        return
    for name in SHARED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _take_process_state():
    """Take the WASI arguments and environment as they are now: an instance
    restored from a base image has the tenant's, not the base's."""
    sys.argv = _wsgi_host.process_args()
    env = _wsgi_host.process_environ()
    posix = sys.modules["posix"]
    posix.environ.clear()
    posix.environ.update(env)  # os.environ and os.environb read this dict
    # This build's time module has no tzset (wasi-libc keeps UTC): were
    # it there, TZ would have to be read again here.
    tzset = getattr(sys.modules.get("time"), "tzset", None)
    if tzset is not None:
        tzset()


def init():
    """Import the app named by argv[1] from the folder argv[2]; return handle.
    Further arguments: "validate" wraps the app in wsgiref's validator,
    which turns any PEP 3333 violation of app or server into an error;
    each "path=FOLDER" goes first on sys.path, in order (ABI.md "wsgi_init")."""
    global _app
    _take_process_state()
    spec = sys.argv[1] if len(sys.argv) > 1 else ""
    app_dir = sys.argv[2] if len(sys.argv) > 2 else "/app"
    options = sys.argv[3:]
    extra = [o[len("path="):] for o in options if o.startswith("path=")]
    sys.path[:0] = extra + [app_dir, app_dir + "/site-packages"]
    _app = _load_app(spec)
    _route_logging()
    if "validate" in options:
        from wsgiref.validate import validator

        _app = validator(_app)
    return handle


# --- Python logging records at their own level (tenant logs) ----------------
# Plain writes to sys.stderr and wsgi.errors are warnings, sys.stdout is
# information; a record of the logging module written to one of them keeps
# its level, as one log_write (its traceback included).


def _host_level(levelno):
    """The log_write level of a logging level number."""
    if levelno >= 40:  # ERROR, CRITICAL
        return LOG_ERROR
    if levelno >= 30:
        return LOG_WARNING
    if levelno >= 20:
        return LOG_INFO
    return LOG_DEBUG


def _route_logging():
    """If the app imported logging, make every logging.StreamHandler whose
    stream is an ErrorStream (sys.stderr, sys.stdout, wsgi.errors, also
    behind a proxy such as Flask's) send each record at the record's level.
    Once per interpreter; an app that imports logging only later logs at
    the stream's level."""
    logging = sys.modules.get("logging")
    if logging is None or getattr(logging.StreamHandler.emit, "_wsgi_wasm", False):
        return
    emit = logging.StreamHandler.emit

    def emit_at_level(self, record):
        stream = self.stream
        try:  # a proxy (werkzeug's LocalProxy) may have nothing behind it
            stream = getattr(stream, "_get_current_object", lambda: stream)()
        except Exception:
            return emit(self, record)
        if not isinstance(stream, ErrorStream):
            return emit(self, record)
        stream.flush()
        saved, stream._level = stream._level, _host_level(record.levelno)
        try:
            emit(self, record)
            stream.flush()
        finally:
            stream._level = saved

    emit_at_level._wsgi_wasm = True
    logging.StreamHandler.emit = emit_at_level


def _excepthook(kind, value, tb):
    """An exception nothing caught (the app's import failing: PyErr_Print)
    as one error record, its traceback included, not a record per line."""
    _wsgi_host.log(LOG_ERROR, "".join(traceback.format_exception(kind, value, tb)).rstrip("\n"))


sys.excepthook = _excepthook
