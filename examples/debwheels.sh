#!/usr/bin/env bash
# Makes wheels from Debian's Python packages, for `wsgi-wasm install
# --find-links` where no package index is reachable (tests, examples).
#   examples/debwheels.sh OUTDIR python3-flask python3-werkzeug ...
# Each package is fetched with `apt-get download` into the cache folder and
# unpacked with `dpkg -x` (nothing is installed system-wide); the files of its
# dist-packages folder become one wheel per distribution found there, with a
# .dist-info (Debian's own, or made from its .egg-info: PKG-INFO becomes
# METADATA, requires.txt becomes Requires-Dist), a WHEEL tagged py3-none-any
# and a RECORD. Symbolic links become copies of their targets (Debian links
# some assets to other packages; a target that is not on this machine is left
# out, with a note). Compiled modules (*.so) are kept: the installer drops
# them, or refuses a distribution that has nothing else.
# Debian strips the base requirements of some packages (Flask's requires.txt
# keeps only its extras), so a requirements file should list them all.
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 OUTDIR DEBIAN-PACKAGE..." >&2; exit 2; }
out=$1
shift
cache=${WSGI_WASM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wsgi-wasm}/debs
python=${BUILD_PYTHON:-/usr/bin/python3}
mkdir -p "$cache" "$out"

need=()
for p in "$@"; do
	ls "$cache"/"${p}"_*.deb >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
	echo "debwheels: downloading ${need[*]}" >&2
	(cd "$cache" && apt-get download "${need[@]}" >/dev/null 2>"$cache/download.log") || {
		# Package lists may be missing on a fresh machine.
		if [[ $(id -u) -eq 0 ]]; then apt-get update -qq; else sudo apt-get update -qq; fi
		(cd "$cache" && apt-get download "${need[@]}" >/dev/null 2>"$cache/download.log") ||
			{ echo "debwheels: apt-get download failed: $(tail -3 "$cache/download.log")" >&2; exit 1; }
	}
fi
for p in "$@"; do
	debs=("$cache"/"${p}"_*.deb)
	deb=${debs[-1]}
	root=$cache/wheel-src/$(basename "$deb" .deb)
	if [[ ! -d $root ]]; then
		rm -rf "$root.tmp" && mkdir -p "$root.tmp"
		dpkg -x "$deb" "$root.tmp"
		mv "$root.tmp" "$root"
	fi
	"$python" - "$root" "$out" <<'EOF'
import base64, email.parser, hashlib, os, re, sys, zipfile

root, out = sys.argv[1], sys.argv[2]
site = os.path.join(root, "usr/lib/python3/dist-packages")
if not os.path.isdir(site):
    sys.exit(f"debwheels: {root}: no dist-packages folder")

def norm(name):
    return re.sub(r"[-_.]+", "_", name)

def requires_dist(egg):
    """requires.txt sections ([extra], [:marker], [extra:marker]) as Requires-Dist lines."""
    path = os.path.join(egg, "requires.txt")
    if not os.path.exists(path):
        return [], []
    reqs, extras, extra, marker = [], [], "", ""
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            extra, _, marker = line[1:-1].partition(":")
            if extra and extra not in extras:
                extras.append(extra)
            continue
        conds = [f"({marker})"] if marker else []
        if extra:
            conds.append(f'extra == "{extra}"')
        reqs.append(line + ("; " + " and ".join(conds) if conds else ""))
    return reqs, extras

def resolve(path):
    """A symbolic link's target inside the unpacked package, else on this machine."""
    target = os.readlink(path)
    if os.path.isabs(target):
        inside = os.path.join(root, target.lstrip("/"))
        return inside if os.path.exists(inside) else (target if os.path.exists(target) else None)
    full = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return full if os.path.exists(full) else None

infos = [d for d in sorted(os.listdir(site)) if d.endswith((".dist-info", ".egg-info"))]
for info in infos:
    ipath = os.path.join(site, info)
    if info.endswith(".dist-info"):
        meta = open(os.path.join(ipath, "METADATA"), encoding="utf-8").read()
    else:
        meta = open(os.path.join(ipath, "PKG-INFO"), encoding="utf-8").read()
    msg = email.parser.Parser().parsestr(meta)
    name, version = msg["Name"], msg["Version"]
    if info.endswith(".egg-info"):
        head, sep, body = meta.partition("\n\n")
        head = "\n".join(l for l in head.split("\n") if not l.startswith(("Requires-Dist:", "Provides-Extra:")))
        reqs, extras = requires_dist(ipath)
        head += "".join(f"\nProvides-Extra: {e}" for e in extras)
        head += "".join(f"\nRequires-Dist: {r}" for r in reqs)
        meta = head + sep + body
    top = os.path.join(ipath, "top_level.txt")
    if os.path.exists(top):
        tops = [t.strip() for t in open(top) if t.strip()]
    else:  # one distribution per Debian package: everything else
        tops = [d for d in os.listdir(site) if d not in infos and d != "__pycache__"]
    files = []  # (archive name, host path)
    for t in tops:
        for cand in (t, t + ".py"):
            p = os.path.join(site, cand)
            if os.path.isdir(p):
                for dirpath, dirs, names in os.walk(p):
                    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                    for n in sorted(names):
                        files.append((os.path.relpath(os.path.join(dirpath, n), site), os.path.join(dirpath, n)))
            elif os.path.exists(p) or os.path.islink(p):
                files.append((cand, p))
    di = f"{norm(name)}-{version}.dist-info"
    extra = {f"{di}/METADATA": meta.encode(),
             f"{di}/WHEEL": b"Wheel-Version: 1.0\nGenerator: wsgi-wasm debwheels\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    for f in ("entry_points.txt", "top_level.txt"):
        p = os.path.join(ipath, f)
        if os.path.exists(p):
            extra[f"{di}/{f}"] = open(p, "rb").read()
    wheel = os.path.join(out, f"{norm(name)}-{version}-py3-none-any.whl")
    record = []
    with zipfile.ZipFile(wheel + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
        def add(arc, data):
            z.writestr(zipfile.ZipInfo(arc, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        for arc, p in files:
            src = resolve(p) if os.path.islink(p) else p
            if src is None:
                print(f"debwheels: {name}: {arc}: left out, a link to {os.readlink(p)} (not on this machine)", file=sys.stderr)
                continue
            add(arc, open(src, "rb").read())
        for arc, data in extra.items():
            add(arc, data)
        z.writestr(f"{di}/RECORD", "\n".join(record + [f"{di}/RECORD,,"]) + "\n")
    os.replace(wheel + ".tmp", wheel)
    print(f"debwheels: {os.path.basename(wheel)}", file=sys.stderr)
EOF
done
