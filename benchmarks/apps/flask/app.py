"""Hello-world Flask app for the server benchmarks, the same code under
gunicorn, uWSGI and wsgi-wasm."""
import time

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello from Flask!\n"


@app.route("/sleep")
def sleep():
    # Holds an instance busy (cold-start benchmark: adding an instance).
    time.sleep(float(request.args.get("s", 1)))
    return "slept\n"
