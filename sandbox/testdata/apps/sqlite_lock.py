"""SQLite and fcntl locks between instances of one data tenant.

/sleep?s=S     sleeps S seconds, touching nothing
/fast          answers at once
/incr?n=N      N increments of one counter, each its own BEGIN IMMEDIATE
               transaction (busy timeout 20 s); answers the last value
/hold?ms=M     takes an exclusive transaction, writes, sleeps M ms, commits
/hold-exit     takes an exclusive transaction, then os._exit(3)
/hold-forever  takes an exclusive transaction and sleeps past any deadline
/try           BEGIN IMMEDIATE with no busy timeout: "ok" or the error
/count         the counter
/flock         flock(LOCK_EX | LOCK_NB) on a file of the data folder kept
               open by the instance: "ok" or the error; /funlock drops it
/flock-app     flock(LOCK_EX) on a file of /app (read-only mount)
"""
import fcntl
import os
import sqlite3
import time
from urllib.parse import parse_qs

DATA = os.environ["WSGI_WASM_DATA_DIR"]
DB = os.path.join(DATA, "lock.db")
held = {}


def connect(timeout):
    db = sqlite3.connect(DB, timeout=timeout, isolation_level=None)
    db.execute("create table if not exists c (k integer primary key, v integer)")
    db.execute("insert or ignore into c values (1, 0)")
    return db


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    body = "ok"
    if path == "/sleep":
        time.sleep(float(q["s"]))
        body = "slept"
    elif path == "/fast":
        body = "fast"
    elif path == "/incr":
        db = connect(20)
        for _ in range(int(q["n"])):
            db.execute("begin immediate")
            (v,) = db.execute("select v from c where k = 1").fetchone()
            db.execute("update c set v = ? where k = 1", (v + 1,))
            db.execute("commit")
        body = str(db.execute("select v from c where k = 1").fetchone()[0])
        db.close()
    elif path.startswith("/hold"):
        db = connect(20)
        db.execute("begin exclusive")
        db.execute("update c set v = v + 1000 where k = 1")
        if path == "/hold-exit":
            os._exit(3)
        if path == "/hold-forever":
            while True:
                time.sleep(1)
        time.sleep(int(q["ms"]) / 1000)
        db.execute("commit")
        db.close()
        body = "held"
    elif path == "/try":
        db = sqlite3.connect(DB, timeout=0, isolation_level=None)
        try:
            db.execute("begin immediate")
            db.execute("commit")
        except sqlite3.OperationalError as e:
            body = str(e)
        db.close()
    elif path == "/count":
        db = connect(20)
        body = str(db.execute("select v from c where k = 1").fetchone()[0])
        db.close()
    elif path == "/flock":
        fd = held.setdefault("fd", os.open(os.path.join(DATA, "f.lock"), os.O_RDWR | os.O_CREAT, 0o644))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            body = type(e).__name__
    elif path == "/funlock":
        fcntl.flock(held["fd"], fcntl.LOCK_UN)
    elif path == "/flock-app":
        with open(__file__) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX)
            except OSError as e:
                body = "errno %d" % e.errno
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
