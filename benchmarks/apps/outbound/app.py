"""The outbound benchmark's app (benchmarks/outbound_test.go): GET /item/ID
reads one row of PostgreSQL by primary key on the worker's kept connection;
GET /measure/NAME?n=N runs a workload of outbench.py and answers its
microseconds per operation, so the sandbox's figure is taken inside it."""
import json

from flask import Flask, abort, request

import outbench

app = Flask(__name__)


@app.get("/item/<int:item_id>")
def item(item_id):
    body = outbench.select_item(item_id)
    if body is None:
        abort(404)
    return body


@app.get("/measure/<name>")
def measure(name):
    n = int(request.args.get("n", "100"))
    try:
        us = outbench.measure(name, n)
    except LookupError as e:
        return json.dumps({"error": str(e)}), 404
    return json.dumps({"us": us, "iterations": outbench.iterations()})
