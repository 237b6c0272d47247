"""Probes the sandbox from inside and reports what it could do, as JSON."""
import json
import os


def _try(fn):
    try:
        r = fn()
        return "ok" if r is None else r
    except OSError as e:
        return type(e).__name__


def probe(environ, start_response):
    data = os.environ.get("WSGI_WASM_DATA_DIR", "")
    result = {
        "env": sorted(os.environ),
        "etc_passwd": _try(lambda: open("/etc/passwd").read(10)),
        "climb": _try(lambda: open("/app/../../etc/passwd").read(10)),
        "root_listing": _try(lambda: sorted(os.listdir("/"))),
        "write_app": _try(lambda: open("/app/new.txt", "w").close()),
        "write_data": _try(lambda: open(data + "/ok.txt", "w").write("x") and None),
        "read_data": _try(lambda: open(data + "/ok.txt").read()),
        "follow_link_out": _try(lambda: open(data + "/link-out/passwd").read(10)),
        "follow_file_link": _try(lambda: open(data + "/file-link").read(10)),
        "make_symlink": _try(lambda: os.symlink("/", data + "/planted")),
        "make_hardlink": _try(lambda: os.link(data + "/ok.txt", data + "/hard")),
        "other_tenant": _try(lambda: os.listdir("/other")),
        "devnull_write": _try(lambda: open(os.devnull, "w").write("discarded") and None),
        "devnull_read": _try(lambda: len(open(os.devnull, "rb").read())),
        "dev_listing": _try(lambda: sorted(os.listdir("/dev"))),
        "dev_other": _try(lambda: open("/dev/zero", "rb").read(1)),
    }
    body = json.dumps(result, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
