#!/usr/bin/env bash
# Installs or locates what the server benchmarks compare against, all from
# Debian 12's packages:
#   wrk, uwsgi-core, uwsgi-plugin-python3   apt-get install (as root, or sudo)
#   gunicorn and Flask for the native side  apt-get download + dpkg -x into a
#                                           cache folder, nothing installed
# and prints, as shell assignments for the harness (`eval`-able):
#   WRK=... UWSGI=... UWSGI_PLUGIN_DIR=... PYTHON=... NATIVE_PYTHONPATH=...
# The .deb files are cached in ~/.cache/wsgi-wasm/debs (shared with
# examples/vendor.sh), the unpacked tree in ~/.cache/wsgi-wasm/bench-native.
set -euo pipefail
base=${WSGI_WASM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wsgi-wasm}
debs=$base/debs
native=$base/bench-native
mkdir -p "$debs"

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# Native Python: Debian's 3.11, the one uwsgi-plugin-python3 is built for.
python=/usr/bin/python3.11
[[ -x $python ]] || { echo "install: $python missing (Debian's python3.11)" >&2; exit 1; }

# System packages: the two servers' binaries and the load generator.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v uwsgi-core >/dev/null || missing+=(uwsgi-core)
ls /usr/lib/uwsgi/plugins/python311_plugin.so >/dev/null 2>&1 || missing+=(uwsgi-plugin-python3)
if ((${#missing[@]})); then
	echo "install: apt-get install ${missing[*]}" >&2
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null 2>"$debs/install.log" || {
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null 2>"$debs/install.log" ||
			{ echo "install: apt-get install failed: $(tail -3 "$debs/install.log")" >&2; exit 1; }
	}
fi

# gunicorn and Flask for the native servers, and nginx (the multi-tenant
# benchmark's front), unpacked, not installed (no service is started).
packages="nginx nginx-common python3-gunicorn python3-flask python3-werkzeug python3-jinja2 python3-markupsafe python3-itsdangerous python3-click"
need=()
for p in $packages; do
	ls "$debs"/"${p}"_*.deb >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
	echo "install: apt-get download ${need[*]}" >&2
	(cd "$debs" && apt-get download "${need[@]}" >/dev/null 2>"$debs/download.log") || {
		as_root apt-get update -qq
		(cd "$debs" && apt-get download "${need[@]}" >/dev/null 2>"$debs/download.log") ||
			{ echo "install: apt-get download failed: $(tail -3 "$debs/download.log")" >&2; exit 1; }
	}
	rm -rf "$native"
fi
[[ -x $native/usr/sbin/nginx ]] || rm -rf "$native"
if [[ ! -d $native ]]; then
	rm -rf "$native.tmp" && mkdir -p "$native.tmp"
	for p in $packages; do
		for deb in "$debs"/"${p}"_*.deb; do dpkg -x "$deb" "$native.tmp"; done
	done
	mv "$native.tmp" "$native"
fi
pythonpath=$native/usr/lib/python3/dist-packages
PYTHONPATH=$pythonpath "$python" -c 'import gunicorn, flask' ||
	{ echo "install: gunicorn or flask does not import from $pythonpath" >&2; exit 1; }
"$native/usr/sbin/nginx" -v 2>/dev/null || { echo "install: $native/usr/sbin/nginx does not run" >&2; exit 1; }

printf 'WRK=%q\n' "$(command -v wrk)"
printf 'UWSGI=%q\n' "$(command -v uwsgi-core)"
printf 'UWSGI_PLUGIN_DIR=%q\n' /usr/lib/uwsgi/plugins
printf 'PYTHON=%q\n' "$python"
printf 'NATIVE_PYTHONPATH=%q\n' "$pythonpath"
printf 'NGINX=%q\n' "$native/usr/sbin/nginx"
