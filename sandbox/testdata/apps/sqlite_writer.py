"""Each request adds one row to a SQLite file in the data folder, reading the
current count first so that lost updates would show: the read and the write
are one BEGIN IMMEDIATE transaction, as concurrent writers need now that
instances of a tenant run side by side and SQLite locks for real."""
import os
import sqlite3

DB = os.path.join(os.environ["WSGI_WASM_DATA_DIR"], "counter.db")


def app(environ, start_response):
    db = sqlite3.connect(DB, timeout=20, isolation_level=None)
    db.execute("create table if not exists hits (n integer)")
    db.execute("begin immediate")
    (n,) = db.execute("select count(*) from hits").fetchone()
    db.execute("insert into hits values (?)", (n + 1,))
    db.execute("commit")
    check = db.execute("pragma integrity_check").fetchone()[0]
    db.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d %s" % (n + 1, check)).encode()]
