"""An unmodified Flask app (Flask 2.2 from Debian, vendored in site-packages/)."""
from flask import Flask, jsonify, render_template_string, request

app = Flask(__name__)

PAGE = """<!doctype html><title>{{ title }}</title>
<h1>{{ title }}</h1><ul>{% for i in items %}<li>{{ i }}</li>{% endfor %}</ul>"""


@app.route("/")
def hello():
    return "Hello from Flask!\n"


@app.route("/json")
def data():
    return jsonify(tenant="flask", args=request.args.to_dict())


@app.route("/page/<name>")
def page(name):
    return render_template_string(PAGE, title=name, items=["<a>", "b", "c"])


@app.route("/echo", methods=["POST"])
def echo():
    return request.get_data()
