"""MySQL/MariaDB through PyMySQL (Debian 12: 1.0.2): creates a table, inserts
a random value (with non-ASCII characters, over utf8mb4) and selects it back.

Environment: MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, MYSQL_DATABASE.
Prints, on its last line:
{"inserted": ..., "selected": ..., "server_version": ..., "driver": ...}
"""
import json
import os
import secrets

import pymysql

env = os.environ
value = secrets.token_hex(8) + " é ☃ 🐍"
conn = pymysql.connect(host=env["MYSQL_HOST"], port=int(env["MYSQL_PORT"]), user=env["MYSQL_USER"],
                       password=env["MYSQL_PASSWORD"], database=env["MYSQL_DATABASE"],
                       charset="utf8mb4", connect_timeout=30)
try:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS roundtrip "
                    "(id INT AUTO_INCREMENT PRIMARY KEY, value VARCHAR(100) NOT NULL)")
        cur.execute("INSERT INTO roundtrip (value) VALUES (%s)", (value,))
        row_id = cur.lastrowid
        conn.commit()
        cur.execute("SELECT value FROM roundtrip WHERE id = %s", (row_id,))
        (selected,) = cur.fetchone()
        cur.execute("SELECT VERSION()")
        (version,) = cur.fetchone()
finally:
    conn.close()
print(json.dumps({"inserted": value, "selected": selected, "server_version": version,
                  "driver": "PyMySQL " + pymysql.VERSION_STRING}))
