# A tenant that fills its data folder: /?write=NAME:BYTES, /?remove=NAME,
# /?append=NAME:BYTES, /?files=N (empty files), /?selfrename=NAME (renames
# a file onto itself, many times), /?hold=NAME:BYTES (writes a file, keeps
# it open and removes it), /?release (closes the held files).
import os

DATA = os.environ["WSGI_WASM_DATA_DIR"]
held = []


def application(environ, start_response):
    action, _, arg = environ["QUERY_STRING"].partition("=")
    result = "ok"
    try:
        if action in ("write", "append"):
            name, size = arg.split(":")
            with open(os.path.join(DATA, name), "ab" if action == "append" else "wb") as f:
                for _ in range(int(size) // 65536):
                    f.write(b"x" * 65536)
                f.write(b"x" * (int(size) % 65536))
        elif action == "remove":
            os.remove(os.path.join(DATA, arg))
        elif action == "selfrename":
            for _ in range(50):
                os.rename(os.path.join(DATA, arg), os.path.join(DATA, arg))
        elif action == "hold":
            name, size = arg.split(":")
            f = open(os.path.join(DATA, name), "wb")
            held.append(f)
            f.write(b"x" * int(size))
            f.flush()
            os.remove(os.path.join(DATA, name))
        elif action == "release":
            for f in held:
                f.close()
            held.clear()
        elif action == "files":
            for i in range(int(arg)):
                open(os.path.join(DATA, "f%d" % i), "wb").close()
    except OSError as e:
        result = "%s %s" % (type(e).__name__, e.errno)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [result.encode()]
