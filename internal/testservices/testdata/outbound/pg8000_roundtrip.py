"""PostgreSQL through pg8000 (Debian 12: 1.10.6, md5 authentication only):
creates a table, inserts a random value and selects it back.

Environment: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE; PGSSLMODE=require
for TLS, with PGSSLROOTCERT (a CA file) to verify the server's certificate
and name (pg8000 1.10.6 calls ssl.wrap_socket, which verifies nothing: the
script puts a verifying context in its place). Prints, on its last line:
{"inserted": ..., "selected": ..., "server_version": ..., "ssl": bool, "driver": ...}
"""
import json
import os
import secrets

import pg8000

env = os.environ
kwargs = dict(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["PGUSER"],
              password=env["PGPASSWORD"], database=env["PGDATABASE"], timeout=30)
if env.get("PGSSLMODE") == "require":
    kwargs["ssl"] = True
    if env.get("PGSSLROOTCERT"):
        import ssl

        context = ssl.create_default_context(cafile=env["PGSSLROOTCERT"])

        def wrap_socket(sock, *args, **kw):
            return context.wrap_socket(sock, server_hostname=env["PGHOST"])

        ssl.wrap_socket = wrap_socket

value = secrets.token_hex(8)
conn = pg8000.connect(**kwargs)
try:
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS roundtrip (id serial PRIMARY KEY, value text NOT NULL)")
    cur.execute("INSERT INTO roundtrip (value) VALUES (%s) RETURNING id", (value,))
    (row_id,) = cur.fetchone()
    conn.commit()
    cur.execute("SELECT value FROM roundtrip WHERE id = %s", (row_id,))
    (selected,) = cur.fetchone()
    cur.execute("SELECT current_setting('server_version'), "
                "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)")
    version, tls = cur.fetchone()
finally:
    conn.close()
print(json.dumps({"inserted": value, "selected": selected, "server_version": version,
                  "ssl": tls, "driver": "pg8000 " + pg8000.__version__}))
