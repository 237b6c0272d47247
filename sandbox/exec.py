# wsgi-wasm exec: run a command in a tenant's sandbox (sandbox.RunAppCommand).
# Run as python -c with the folders of the tenant's python_path (each
# --path=FOLDER), then --, then the command: a script of /app (manage.py),
# -m MODULE, -c CODE, or a console script of site-packages (flask), else a
# module of that name run as -m would run it.
import sys

# The sandbox's _socket and select (outbound connections made by the host,
# hostabi/ABI.md "Outbound connections"), installed as the reactor's
# bootstrap installs them, before anything imports socket.
if "socket" in sys.modules or "selectors" in sys.modules:
    raise ImportError("socket was imported before wsgi-wasm exec could install the sandbox's _socket")
import _wsgi_select  # noqa: E402
import _wsgi_socket  # noqa: E402

sys.modules["_socket"] = _wsgi_socket
sys.modules["select"] = _wsgi_select

import os, runpy  # noqa: E402,E401

_end = sys.argv.index("--")
_paths = [a[len("--path="):] for a in sys.argv[1:_end]]
_args = sys.argv[_end + 1:]
if _args[:1] == ["python"] or _args[:1] == ["python3"]:
    _args = _args[1:]
os.chdir("/app")
sys.path[:1] = _paths + ["/app", "/app/site-packages"]
try:  # hashlib.pbkdf2_hmac by the host where it has one (hostabi/ABI.md "Key derivation")
    import _wsgi_hashlib
except ImportError:  # an interpreter built before it
    pass
else:
    _wsgi_hashlib.install()


def _console_script(name):
    try:
        from importlib.metadata import entry_points
    except ImportError:
        return None
    for ep in entry_points(group="console_scripts"):
        if ep.name == name:
            return ep
    return None


def _main(args):
    if not args:
        sys.stderr.write("wsgi-wasm exec: no command\n")
        return 2
    first = args[0]
    if first == "-m" and len(args) > 1:
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif first == "-c" and len(args) > 1:
        sys.argv = ["-c"] + args[2:]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif first.endswith(".py") or "/" in first:
        path = os.path.join("/app", first)
        sys.argv = [path] + args[1:]
        sys.path[len(_paths)] = os.path.dirname(path)  # in place of /app
        runpy.run_path(path, run_name="__main__")
    else:
        ep = _console_script(first)
        sys.argv = args
        if ep is not None:
            return ep.load()()
        try:
            runpy.run_module(first, run_name="__main__", alter_sys=True)
        except ImportError as e:
            if getattr(e, "name", None) != first:
                raise
            sys.stderr.write("wsgi-wasm exec: %s is no script of /app, console script of site-packages or module\n" % first)
            return 2
    return 0


sys.exit(_main(_args))
