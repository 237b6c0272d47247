"""Outbound-connection workloads of benchmarks/OUTBOUND.md, timed the same
way natively (python3 -c) and in the sandbox (app.py's /measure route), so
that the two figures differ only by where the code runs.

Each workload takes its servers from the environment: PG* (PostgreSQL),
REDIS_* (Redis), BENCH_HTTPS_HOST/PORT and BENCH_CA (an HTTPS server and the
CA file that verifies it). measure(name, n) returns microseconds per
operation over n operations, after one untimed operation.
"""
import hashlib
import http.client
import os
import socket
import ssl
import time

import pg8000

_pg = None


def pg():
    """The process's PostgreSQL connection, opened on first use and kept,
    as an app keeps its database connection between requests."""
    global _pg
    if _pg is None:
        e = os.environ
        _pg = pg8000.connect(host=e["PGHOST"], port=int(e["PGPORT"]), user=e["PGUSER"],
                             password=e["PGPASSWORD"], database=e["PGDATABASE"])
    return _pg


def select_item(item_id):
    cur = pg().cursor()
    cur.execute("SELECT body FROM items WHERE id = %s", (item_id,))
    row = cur.fetchone()
    return row[0] if row else None


def _redis():
    e = os.environ
    s = socket.create_connection((e["REDIS_HOST"], int(e["REDIS_PORT"])), timeout=10)
    pw = e["REDIS_PASSWORD"].encode()
    s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
    if _read_line(s) != b"+OK\r\n":
        raise RuntimeError("redis AUTH refused")
    return s


def _read_line(s):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = s.recv(64)
        if not chunk:
            raise RuntimeError("redis closed the connection")
        buf += chunk
    return buf


def _https_context():
    return ssl.create_default_context(cafile=os.environ["BENCH_CA"])


def _https_get(conn):
    conn.request("GET", "/")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or not body:
        raise RuntimeError("HTTPS GET: %d" % r.status)


def _timed(op, n):
    op()
    t0 = time.perf_counter()
    for _ in range(n):
        op()
    return (time.perf_counter() - t0) / n * 1e6


def measure(name, n):
    """Microseconds per operation of workload name over n operations."""
    e = os.environ
    if name == "roundtrip":
        # A 6-byte request and a 7-byte answer on an open connection:
        # what a driver's small query pays beyond the server's work.
        s = _redis()
        try:
            def ping():
                s.sendall(b"PING\r\n")
                if _read_line(s) != b"+PONG\r\n":
                    raise RuntimeError("redis PING")
            return _timed(ping, n)
        finally:
            s.close()
    if name == "select":
        return _timed(lambda: select_item(1), n)
    if name in ("https_new", "https_reused"):
        ctx = _https_context()
        host, port = e["BENCH_HTTPS_HOST"], int(e["BENCH_HTTPS_PORT"])
        if name == "https_new":
            def fresh():
                c = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
                try:
                    _https_get(c)
                finally:
                    c.close()
            return _timed(fresh, n)
        c = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
        try:
            return _timed(lambda: _https_get(c), n)
        finally:
            c.close()
    if name in ("login", "login_pure"):
        # Django's check of a password against its PBKDF2-SHA256 hash at
        # Django's default iterations: the CPU of a login.
        from django.contrib.auth.hashers import PBKDF2PasswordHasher
        hasher = PBKDF2PasswordHasher()
        encoded = hasher.encode("correct horse", "saltsaltsalt")
        if name == "login_pure":
            pure = getattr(hashlib, "_pure_pbkdf2_hmac", None)
            if pure is None:
                raise LookupError("no pure-Python pbkdf2_hmac to compare with here")
            fast, hashlib.pbkdf2_hmac = hashlib.pbkdf2_hmac, pure
        try:
            def login():
                if not hasher.verify("correct horse", encoded):
                    raise RuntimeError("password did not verify")
            return _timed(login, n)
        finally:
            if name == "login_pure":
                hashlib.pbkdf2_hmac = fast
    raise LookupError("no workload %r" % name)


def iterations():
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    return PBKDF2PasswordHasher.iterations
