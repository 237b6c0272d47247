#!/usr/bin/env bash
# Installs the database servers that the tests of issue 13 (outbound
# connections) talk to, from Debian 12's packages, without installing them:
#   PostgreSQL 15, MariaDB 10.11 and Redis 7.0
# are fetched with `apt-get download` and unpacked with `dpkg -x` into
#   ${WSGI_WASM_CACHE:-~/.cache/wsgi-wasm}/testservices/root
# (nothing system-wide, no service started by a postinst script). Package
# testservices finds them there and runs them with LD_LIBRARY_PATH pointing
# into the tree. The .deb files are kept in .../testservices/debs; a second
# run with nothing missing only checks the tree (well under a second).
#   internal/testservices/install.sh          install or check
#   internal/testservices/install.sh dir      print the tree's folder
set -euo pipefail
base=${WSGI_WASM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wsgi-wasm}/testservices
debs=$base/debs
root=$base/root
if [[ ${1:-} == dir ]]; then
	echo "$root"
	exit 0
fi

# The servers and the few libraries of theirs that Debian 12 with Go lacks
# (the others, libicu72, libxml2, libssl3 and the like, are on such a
# machine already; the check below names any that is not).
packages="postgresql-15 postgresql-client-15 libpq5 mariadb-server-core mariadb-client-core liburing2 libaio1 redis-tools redis-server libjemalloc2 liblzf1"
# Bump when the list or the layout changes: the tree is then unpacked anew.
stamp="3 $packages"

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

if [[ -f $root/.stamp && $(<"$root/.stamp") == "$stamp" ]]; then
	exit 0
fi

mkdir -p "$debs"
need=()
for p in $packages; do
	ls "$debs"/"${p}"_*.deb >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
	echo "testservices: apt-get download ${need[*]}" >&2
	(cd "$debs" && apt-get download "${need[@]}" >/dev/null 2>"$debs/download.log") || {
		# Package lists may be missing on a fresh machine.
		as_root apt-get update -qq
		(cd "$debs" && apt-get download "${need[@]}" >/dev/null 2>"$debs/download.log") ||
			{ echo "testservices: apt-get download failed: $(tail -3 "$debs/download.log")" >&2; exit 1; }
	}
fi

rm -rf "$root.tmp" && mkdir -p "$root.tmp"
for p in $packages; do
	for deb in "$debs"/"${p}"_*.deb; do dpkg -x "$deb" "$root.tmp"; done
done
# Every binary's libraries must resolve, from the tree or the system.
libs=$root.tmp/usr/lib/x86_64-linux-gnu
missing=$(for b in "$root.tmp"/usr/lib/postgresql/15/bin/{postgres,initdb,psql} "$root.tmp"/usr/sbin/mariadbd \
	"$root.tmp"/usr/bin/{mariadb,redis-server}; do
	LD_LIBRARY_PATH=$libs ldd "$b" | awk '/not found/ {print $1}'
done | sort -u)
if [[ -n $missing ]]; then
	echo "testservices: libraries missing on this machine: $missing (apt-get install the packages that ship them)" >&2
	exit 1
fi
echo "$stamp" >"$root.tmp/.stamp"
rm -rf "$root" && mv "$root.tmp" "$root"
echo "testservices: PostgreSQL, MariaDB and Redis unpacked in $root" >&2
