"""Splice generated text into a Markdown file between marker comments:

    <!-- BEGIN generated:NAME -->
    ... replaced ...
    <!-- END generated:NAME -->

Used by the measuring scripts so that README figures are never typed."""
import re


def splice(path, name, text):
    with open(path) as f:
        doc = f.read()
    begin, end = "<!-- BEGIN generated:%s -->" % name, "<!-- END generated:%s -->" % name
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(doc):
        raise SystemExit("%s: no %s ... %s markers" % (path, begin, end))
    doc = pattern.sub(lambda _: begin + "\n" + text.rstrip("\n") + "\n" + end, doc)
    with open(path, "w") as f:
        f.write(doc)
