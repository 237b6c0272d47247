"""Each request adds one row to a SQLite file in the data folder, reading the
current count first so that lost updates would show."""
import os
import sqlite3

DB = os.path.join(os.environ["WSGI_WASM_DATA_DIR"], "counter.db")


def app(environ, start_response):
    db = sqlite3.connect(DB)
    db.execute("create table if not exists hits (n integer)")
    (n,) = db.execute("select count(*) from hits").fetchone()
    db.execute("insert into hits values (?)", (n + 1,))
    db.commit()
    check = db.execute("pragma integrity_check").fetchone()[0]
    db.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d %s" % (n + 1, check)).encode()]
