"""The notes-pg example tenant's app (examples/tenants/notes-pg) through
Flask's test client: adds a note and reads it back, survives the loss of
its connection (503 once, then reconnects), and answers 503 with the reason
when PostgreSQL cannot be reached.

Environment: NOTES_APP_DIR (the tenant's folder), NOTES_DATABASE_URL; with
NOTES_DOWN=1 the URL is expected to be unreachable. Prints, on its last line:
{"added": {...}, "got": {...}, "listed": [...], "lost": [status, body], "reconnected": status}
or, with NOTES_DOWN=1, {"index": status, "notes": status, "body": ...}
"""
import json
import os
import sys

tenant = os.environ["NOTES_APP_DIR"]
sys.path[:0] = [tenant, os.path.join(tenant, "site-packages")]

from app import _settings, app  # noqa: E402

client = app.test_client()
if os.environ.get("NOTES_DOWN") == "1":
    index = client.get("/")
    notes = client.get("/notes")
    print(json.dumps({"index": index.status_code, "notes": notes.status_code, "body": notes.get_data(as_text=True)}))
    sys.exit(0)

text = "a note é ☃"
empty = client.get("/notes")
assert empty.status_code == 200 and empty.get_json() == [], (empty.status_code, empty.get_data())
added = client.post("/notes", data=text.encode())
assert added.status_code == 201, (added.status_code, added.get_data())
note_id = added.get_json()["id"]
got = client.get("/notes/%d" % note_id).get_json()
listed = client.get("/notes").get_json()
missing = client.get("/notes/%d" % (note_id + 1000)).status_code

# Another session ends the app's: the next request is a 503, the one after
# reconnects.
import pg8000  # noqa: E402

killer = pg8000.connect(**_settings())
cur = killer.cursor()
cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
killer.commit()
killer.close()
lost = client.get("/notes")
again = client.get("/notes")
print(json.dumps({"added": added.get_json(), "got": got, "listed": listed, "missing": missing,
                  "lost": [lost.status_code, lost.get_data(as_text=True)], "reconnected": again.status_code}))
