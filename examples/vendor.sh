#!/usr/bin/env bash
# Vendors the pure-Python packages the example and test tenants use, from
# Debian's packages (`apt-get download` + `dpkg -x`, nothing installed
# system-wide), into each tenant's site-packages/ (git-ignored), and the
# client libraries of the outbound tests (issue 13) into
# internal/testservices/testdata/outbound/site-packages/ (git-ignored too).
#   examples/vendor.sh            all tenants below, and the outbound tests
# The packages become wheels and are installed with `wsgi-wasm install`
# (below), so it needs the built interpreter (make python-wasi).
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
	if [[ $(id -u) -eq 0 ]]; then apt-get -o DPkg::Lock::Timeout=600 install -y -qq tzdata >/dev/null; else sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq tzdata >/dev/null; fi
fi

# Each set becomes wheels (examples/debwheels.sh: apt-get download, dpkg -x,
# a .dist-info with RECORD), then `wsgi-wasm install` puts them into the
# folder, by pip in the sandbox, as an operator would: metadata kept,
# compiled speedups dropped (their packages fall back to pure Python), no
# symbolic links (Debian's asset links become copies, or are left out when
# their target is not on this machine). A set is redone when its packages,
# debwheels.sh or the installer change; MODULES are checked afterwards.
root=$(cd "$here/.." && pwd)
stamps=$cache/vendored
mkdir -p "$stamps"
code=$(cat "$here/debwheels.sh" "$root"/deps/*.go "$root"/deps/*.py | sha256sum | cut -c1-16)
bin=
for t in "${!MODULES[@]}"; do
	dest=${DEST[$t]:-$here/tenants/$t/site-packages}
	[[ -d $(dirname "$dest") ]] || continue
	stamp="$code ${PACKAGES[$t]}"
	if [[ -d $dest && -f $stamps/$t && $(cat "$stamps/$t") == "$stamp" ]]; then
		continue
	fi
	if [[ -z $bin ]]; then
		bin=$(mktemp -d)/wsgi-wasm
		trap 'rm -rf "$(dirname "$bin")"' EXIT
		(cd "$root" && go build -o "$bin" ./cmd/wsgi-wasm)
	fi
	wheels=$cache/wheels/$t
	rm -rf "$wheels" && mkdir -p "$wheels"
	# shellcheck disable=SC2086
	bash "$here/debwheels.sh" "$wheels" ${PACKAGES[$t]} 2>"$wheels.log" ||
		{ cat "$wheels.log" >&2; exit 1; }
	for w in "$wheels"/*.whl; do basename "$w" | cut -d- -f1; done >"$wheels.txt"
	rm -f "$stamps/$t"
	(cd "$root" && "$bin" -q install -r "$wheels.txt" --find-links "$wheels" "$(dirname "$dest")") >"$wheels.install.log" ||
		{ cat "$wheels.install.log" >&2; exit 1; }
	for m in ${MODULES[$t]}; do
		[[ -e $dest/$m ]] || { echo "vendor: $t: $m missing from $dest after the install" >&2; exit 1; }
	done
	echo "$stamp" >"$stamps/$t"
	echo "vendor: $t: ${MODULES[$t]}" >&2
done
