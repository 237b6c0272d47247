"""Line charts as hand-written SVG, for the benchmark harness (no plotting
library). A figure is a grid of panels; a panel has named series of (x, y)
points, linear or log axes, and a legend.
"""
import math
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf"]
PW, PH = 360, 250          # panel size
ML, MR, MT, MB = 62, 14, 30, 44  # margins inside a panel


def _ticks(lo, hi, log):
    """Axis ticks: 1-2-5 decades on a log axis, ~5 round steps otherwise."""
    if log:
        out = []
        e = math.floor(math.log10(lo))
        while 10 ** e <= hi * 1.0001:
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo * 0.9999 <= v <= hi * 1.0001:
                    out.append(v)
            e += 1
        return out
    span = hi - lo or 1
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=mag * 10)
    start = math.ceil(lo / step) * step
    n = int(math.floor((hi - start) / step + 1e-9)) + 1
    return [start + i * step for i in range(n)]


def _fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return "%gk" % (v / 1000)
    return "%g" % float("%.3g" % v)


class Panel:
    def __init__(self, title, xlabel, ylabel, xlog=False, ylog=False, ymin=None, ymax=None, xmin=None, xmax=None,
                 xticks=None):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xlog, self.ylog = xlog, ylog
        self.lim = [xmin, xmax, ymin, ymax]
        self.xticks = xticks
        self.series = []  # (name, points, dashed)

    def add(self, name, points, dashed=False, markers=True):
        pts = [(float(x), float(y)) for x, y in points
               if (not self.xlog or x > 0) and (not self.ylog or y > 0)]
        if pts:
            self.series.append((name, pts, dashed, markers))

    def _limits(self):
        xs = [x for _, pts, _, _ in self.series for x, _ in pts] or [1]
        ys = [y for _, pts, _, _ in self.series for _, y in pts] or [1]
        xmin, xmax, ymin, ymax = self.lim
        xmin = min(xs) if xmin is None else xmin
        xmax = max(xs) if xmax is None else xmax
        ymin = (min(ys) if self.ylog else 0) if ymin is None else ymin
        ymax = max(ys) * (1.0 if self.ylog else 1.08) if ymax is None else ymax
        if xmax <= xmin:
            xmax = xmin * 2 if self.xlog else xmin + 1
        if ymax <= ymin:
            ymax = ymin * 2 if self.ylog else ymin + 1
        return xmin, xmax, ymin, ymax

    def render(self, ox, oy, names, pw=PW):
        xmin, xmax, ymin, ymax = self._limits()
        w, h = pw - ML - MR, PH - MT - MB

        def sx(x):
            if self.xlog:
                return ox + ML + w * (math.log10(x) - math.log10(xmin)) / (math.log10(xmax) - math.log10(xmin))
            return ox + ML + w * (x - xmin) / (xmax - xmin)

        def sy(y):
            if self.ylog:
                f = (math.log10(y) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin))
            else:
                f = (y - ymin) / (ymax - ymin)
            return oy + MT + h * (1 - f)

        out = ['<text x="%.1f" y="%.1f" font-size="13" text-anchor="middle" font-weight="bold">%s</text>' % (
            ox + ML + w / 2, oy + 18, escape(self.title))]
        out.append('<rect x="%.1f" y="%.1f" width="%d" height="%d" fill="none" stroke="#888"/>' % (ox + ML, oy + MT, w, h))
        for t in (self.xticks or _ticks(xmin, xmax, self.xlog)):
            if not xmin <= t <= xmax:
                continue
            x = sx(t)
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>' % (x, oy + MT, x, oy + MT + h))
            out.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>' % (x, oy + MT + h + 13, _fmt(t)))
        for t in _ticks(ymin, ymax, self.ylog):
            y = sy(t)
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>' % (ox + ML, y, ox + ML + w, y))
            out.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s</text>' % (ox + ML - 4, y + 3, _fmt(t)))
        out.append('<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>' % (
            ox + ML + w / 2, oy + PH - 12, escape(self.xlabel)))
        out.append('<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>' % (
            ox + 14, oy + MT + h / 2, ox + 14, oy + MT + h / 2, escape(self.ylabel)))
        for name, pts, dashed, markers in self.series:
            color = COLORS[names.index(name) % len(COLORS)]
            clipped = [(min(max(x, xmin), xmax), min(max(y, ymin), ymax)) for x, y in pts]
            path = " ".join("%.1f,%.1f" % (sx(x), sy(y)) for x, y in clipped)
            out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>' % (
                path, color, ' stroke-dasharray="5,3"' if dashed else ""))
            if markers:
                for x, y in clipped:
                    out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(x), sy(y), color))
        return out


def figure(path, title, panels, cols, pw=PW):
    """Writes panels (each pw wide) in a grid of cols columns, with one
    legend for all series names, to path."""
    names = []
    for p in panels:
        for name, _, _, _ in p.series:
            if name not in names:
                names.append(name)
    rows = (len(panels) + cols - 1) // cols
    legend_h = 22
    width, height = cols * pw, rows * PH + 34 + legend_h
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif">' % (width, height, width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15" text-anchor="middle" font-weight="bold">%s</text>' % (width / 2, escape(title))]
    x = 10
    for i, name in enumerate(names):
        color = COLORS[i % len(COLORS)]
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>' % (x, 40, x + 18, 40, color))
        out.append('<text x="%d" y="%d" font-size="12">%s</text>' % (x + 22, 44, escape(name)))
        x += 30 + 7 * len(name)
    for i, p in enumerate(panels):
        out += p.render((i % cols) * pw, 34 + legend_h + (i // cols) * PH, names, pw)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
