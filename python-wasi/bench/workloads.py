"""CPU-bound workloads for comparing the interpreter under wazero with native
python3.11. Run as: python workloads.py NAME REPEATS; prints the best wall
time in seconds of REPEATS runs (start-up excluded)."""
import json
import sys
import time


def loops():
    total = 0
    for i in range(1_000_000):
        total += i * i
    return total


def dict_str():
    words = ("alpha beta gamma delta epsilon zeta eta theta iota kappa " * 20).split()
    counts = {}
    for _ in range(600):
        for w in words:
            key = w.upper() + "-" + w[::-1]
            counts[key] = counts.get(key, 0) + 1
        ",".join(sorted(counts)).split(",")
    return len(counts)


DOC = {"users": [{"id": i, "name": "user%d" % i, "tags": ["a", "b", "c"], "score": i * 1.5,
                  "active": i % 2 == 0, "meta": {"created": "2024-01-01T00:00:00Z", "n": None}}
                 for i in range(400)]}


def json_roundtrip():
    for _ in range(40):
        s = json.dumps(DOC)
        assert json.loads(s)["users"][7]["id"] == 7
    return len(s)


TEMPLATE = """<html><head><title>{{ title }}</title></head><body>
<h1>{{ title|upper }}</h1><ul>
{% for item in items %}<li class="{{ item.kind }}">{{ item.name|escape }} costs {{ item.price }}</li>
{% endfor %}</ul></body></html>"""


def compile_template(src):
    """A small Jinja2-like compiler: {{ expr|filter }} and {% for %} blocks,
    turned into Python source once, then run per render."""
    import re
    code = ["def render(ctx, escape, out):"]
    indent = 1
    for token in re.split(r"({{.*?}}|{%.*?%})", src):
        if token.startswith("{{"):
            expr, *filters = [p.strip() for p in token[2:-2].split("|")]
            value = "ctx[%r]" % expr if "." not in expr else "ctx[%r][%r]" % tuple(expr.split("."))
            for f in filters:
                value = "escape(str(%s))" % value if f == "escape" else "str(%s).%s()" % (value, f)
            code.append("    " * indent + "out.append(str(%s))" % value)
        elif token.startswith("{%"):
            words = token[2:-2].split()
            if words[0] == "for":
                code.append("    " * indent + "for _v in ctx[%r]:" % words[3])
                indent += 1
                code.append("    " * indent + "ctx[%r] = _v" % words[1])
            elif words[0] == "endfor":
                indent -= 1
        elif token:
            code.append("    " * indent + "out.append(%r)" % token)
    namespace = {}
    exec("\n".join(code), namespace)
    return namespace["render"]


def template():
    import html
    render = compile_template(TEMPLATE)
    items = [{"name": "thing <%d>" % i, "price": i * 3, "kind": "k%d" % (i % 3)} for i in range(200)]
    for _ in range(300):
        out = []
        render({"title": "Shop", "items": items}, html.escape, out)
    return len("".join(out))


WORKLOADS = {"loops": loops, "dict_str": dict_str, "json": json_roundtrip, "template": template}


def main():
    name, repeats = sys.argv[1], int(sys.argv[2])
    fn = WORKLOADS[name]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    print("%.6f" % best)


if __name__ == "__main__":
    main()
