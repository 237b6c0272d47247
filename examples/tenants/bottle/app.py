"""An unmodified Bottle app (Bottle 0.12 from Debian, vendored in site-packages/)."""
import bottle

app = bottle.Bottle()


@app.route("/")
def hello():
    return "Hello from Bottle!\n"


@app.route("/hello/<name>")
def greet(name):
    return {"hello": name}


application = app
