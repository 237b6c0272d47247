"""Notes kept in PostgreSQL, through pg8000 (Debian 12's 1.10.6: pure
Python, md5 password authentication; no SCRAM, so the role's password is
stored as md5).

The database comes from the tenant's [env], NOTES_DATABASE_URL
(postgresql://USER:PASSWORD@HOST:PORT/DATABASE). The app connects on its
first request, not at import (a snapshot of the instance holds no
connection), creates its table if missing, keeps the connection for the
next requests and reconnects once it is lost. While PostgreSQL cannot be
reached, every route but / answers 503 with the reason.

    GET  /           what this is
    GET  /notes      the notes, newest first (JSON)
    POST /notes      adds the request body (text) as a note: 201 and the note
    GET  /notes/<id> one note, or 404
"""
import os
from urllib.parse import unquote, urlsplit

from flask import Flask, jsonify, request

app = Flask(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS notes (
    id serial PRIMARY KEY,
    text text NOT NULL,
    created timestamptz NOT NULL DEFAULT now())"""

_conn = None


class Unavailable(Exception):
    """PostgreSQL cannot be reached; the message says why."""


def _settings():
    url = os.environ.get("NOTES_DATABASE_URL", "")
    u = urlsplit(url)
    if u.scheme not in ("postgresql", "postgres") or not u.hostname or not u.path.strip("/"):
        raise Unavailable("NOTES_DATABASE_URL is %r; want postgresql://USER:PASSWORD@HOST:PORT/DATABASE" % url)
    return dict(host=u.hostname, port=u.port or 5432, user=unquote(u.username or ""),
                password=unquote(u.password or ""), database=unquote(u.path.strip("/")))


def _where(s):
    return "PostgreSQL at %s:%d (database %s)" % (s["host"], s["port"], s["database"])


def db():
    """The open connection, made (and the table created) on first use."""
    global _conn
    if _conn is not None:
        return _conn
    s = _settings()
    try:
        import pg8000  # here, not at import: it needs the socket module
    except ImportError as e:
        raise Unavailable("pg8000 cannot be imported here: %s" % e)
    try:
        conn = pg8000.connect(timeout=10, **s)
    except Exception as e:
        raise Unavailable("%s is unreachable: %s: %s" % (_where(s), type(e).__name__, e))
    try:
        cur = conn.cursor()
        cur.execute(SCHEMA)
        conn.commit()
    except Exception:
        conn.close()
        raise
    _conn = conn
    return conn


def query(sql, args=()):
    """Runs one statement in its own transaction and returns its rows; a
    lost connection is dropped (the next request reconnects) and is a 503."""
    global _conn
    conn = db()
    try:
        cur = conn.cursor()
        cur.execute(sql, args)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    except (OSError, EOFError) as e:
        lost(e)
    except Exception as e:
        if type(e).__name__ == "InterfaceError":  # pg8000's, for a broken connection
            lost(e)
        try:
            conn.rollback()
        except Exception:
            lost(e)
        raise


def lost(e):
    global _conn
    conn, _conn = _conn, None
    try:
        conn.close()
    except Exception:
        pass
    raise Unavailable("the connection to PostgreSQL was lost: %s: %s" % (type(e).__name__, e))


@app.errorhandler(Unavailable)
def unavailable(e):
    return "notes-pg: %s\n" % e, 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"}


def note(row):
    return {"id": row[0], "text": row[1], "created": row[2].isoformat()}


@app.route("/")
def index():
    return "notes-pg: notes in PostgreSQL. GET /notes, POST /notes (the body is the note).\n"


@app.route("/notes")
def list_notes():
    rows = query("SELECT id, text, created FROM notes ORDER BY id DESC LIMIT 100")
    return jsonify([note(r) for r in rows])


@app.route("/notes", methods=["POST"])
def add_note():
    text = request.get_data(as_text=True).strip()
    if not text:
        return "notes-pg: a note needs a body\n", 400
    rows = query("INSERT INTO notes (text) VALUES (%s) RETURNING id, text, created", (text,))
    return jsonify(note(rows[0])), 201


@app.route("/notes/<int:note_id>")
def get_note(note_id):
    rows = query("SELECT id, text, created FROM notes WHERE id = %s", (note_id,))
    if not rows:
        return "notes-pg: no note %d\n" % note_id, 404
    return jsonify(note(rows[0]))
