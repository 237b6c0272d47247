#!/usr/bin/env bash
# Vendors the pure-Python packages the example and test tenants use, from
# Debian's packages (`apt-get download` + `dpkg -x`, nothing installed
# system-wide), into each tenant's site-packages/ (git-ignored), and the
# client libraries of the outbound tests (issue 13) into
# internal/testservices/testdata/outbound/site-packages/ (git-ignored too).
#   examples/vendor.sh            all tenants below, and the outbound tests
# Compiled speedups (*.so) are removed: the sandbox loads no native code, and
# the packages fall back to their pure-Python versions. Symbolic links are
# removed too (the runtime refuses app folders that contain any).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${WSGI_WASM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wsgi-wasm}/debs
mkdir -p "$cache"

# tenant folder -> Debian packages -> top-level modules to copy
declare -A PACKAGES=(
	[flask]="python3-flask python3-werkzeug python3-jinja2 python3-markupsafe python3-itsdangerous python3-click"
	[bottle]="python3-bottle"
	[django]="python3-django python3-asgiref python3-sqlparse python3-tz"
	[notes-pg]="python3-flask python3-werkzeug python3-jinja2 python3-markupsafe python3-itsdangerous python3-click python3-pg8000 python3-six"
	# Every client library the outbound tests use, and Django for Django on
	# MySQL through PyMySQL. wrapt (redis-py's deprecated) loses its C
	# speedups below and falls back to pure Python; SQLAlchemy's are in
	# python3-sqlalchemy-ext, which is not taken.
	[outbound]="python3-pg8000 python3-six python3-pymysql python3-redis python3-async-timeout python3-deprecated python3-wrapt python3-packaging python3-sqlalchemy python3-requests python3-urllib3 python3-certifi python3-idna python3-charset-normalizer python3-chardet python3-django python3-asgiref python3-sqlparse python3-tz"
)
declare -A MODULES=(
	[flask]="flask werkzeug jinja2 markupsafe itsdangerous click"
	[bottle]="bottle.py"
	[django]="django asgiref sqlparse pytz"
	[notes-pg]="flask werkzeug jinja2 markupsafe itsdangerous click pg8000 six.py"
	[outbound]="pg8000 six.py pymysql redis async_timeout deprecated wrapt packaging sqlalchemy requests urllib3 certifi idna charset_normalizer chardet django asgiref sqlparse pytz"
)
# Where a set goes when it is not an example tenant's.
declare -A DEST=(
	[outbound]=$here/../internal/testservices/testdata/outbound/site-packages
)

# Time zone data: the runtime gives guests the host's /usr/share/zoneinfo
# (Debian's pytz, used by Django, reads it).
if [[ ! -f /usr/share/zoneinfo/tzdata.zi ]]; then
	echo "vendor: installing tzdata" >&2
	if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq tzdata >/dev/null; else sudo apt-get install -y -qq tzdata >/dev/null; fi
fi

unpacked=$cache/unpacked
need=()
for t in "${!PACKAGES[@]}"; do
	for p in ${PACKAGES[$t]}; do
		ls "$cache"/"${p}"_*.deb >/dev/null 2>&1 || need+=("$p")
	done
done
if ((${#need[@]})); then
	echo "vendor: downloading ${need[*]}" >&2
	(cd "$cache" && apt-get download "${need[@]}" >/dev/null 2>"$cache/download.log") || {
		# Package lists may be missing on a fresh machine.
		if [[ $(id -u) -eq 0 ]]; then apt-get update -qq; else sudo apt-get update -qq; fi
		(cd "$cache" && apt-get download "${need[@]}" >/dev/null 2>"$cache/download.log") ||
			{ echo "vendor: apt-get download failed: $(tail -3 "$cache/download.log")" >&2; exit 1; }
	}
	rm -rf "$unpacked"
fi
if [[ ! -d $unpacked ]]; then
	mkdir -p "$unpacked.tmp"
	for deb in "$cache"/*.deb; do dpkg -x "$deb" "$unpacked.tmp"; done
	mv "$unpacked.tmp" "$unpacked"
fi
dist=$unpacked/usr/lib/python3/dist-packages
for t in "${!MODULES[@]}"; do
	dest=${DEST[$t]:-$here/tenants/$t/site-packages}
	[[ -d $(dirname "$dest") ]] || continue
	rm -rf "$dest" && mkdir -p "$dest"
	for m in ${MODULES[$t]}; do
		cp -r "$dist/$m" "$dest/"
	done
	find "$dest" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
	# Debian links some assets to system-wide copies (werkzeug's debugger
	# jquery.js); the runtime refuses app folders with symbolic links.
	find "$dest" -type l -delete
	echo "vendor: $t: ${MODULES[$t]}" >&2
done
