#!/usr/bin/env bash
# python-wasi/build.sh: the one entry point of the interpreter recipe.
#
#   build.sh [build]   install the toolchain if missing, then build or reuse
#                      the interpreter; prints the output directory
#   build.sh deps      only install the Debian toolchain and deb-src entry
#   build.sh dir       print the output directory for the current recipe
#                      (exit 1 if it has not been built)
#   build.sh key       print the cache keys of both stages
#
# Outputs live outside the repository, in $WSGI_WASM_CACHE or
# ${XDG_CACHE_HOME:-~/.cache}/wsgi-wasm/python-wasi, keyed by a hash of every
# input: this folder's recipe files, the pinned sources and the toolchain.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

need_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

install_deps() {
	local missing=() p
	for p in "${TOOLCHAIN_PACKAGES[@]}"; do
		dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	# apt-get source needs deb-src entries; derive them from the configured
	# Debian sources so that no mirror is named here.
	local src_list=/etc/apt/sources.list.d/wsgi-wasm-src.sources
	if [[ ! -f $src_list ]]; then
		log "adding deb-src entries ($src_list)"
		if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
			sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | need_root tee "$src_list" >/dev/null
		else
			grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | need_root tee "${src_list%.sources}.list" >/dev/null
			need_root touch "$src_list"
		fi
		missing+=(update-needed)
	fi
	if ((${#missing[@]})); then
		log "installing Debian packages: ${missing[*]/update-needed/}"
		need_root apt-get update -qq
		local pkgs=("${missing[@]/update-needed/}")
		[[ -n ${pkgs[*]// /} ]] && need_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends ${pkgs[*]} >/dev/null
	fi
	return 0
}

cmd=${1:-build}
case $cmd in
deps) install_deps ;;
key) printf 'cpython %s\ninterp %s\n' "$(cpython_key)" "$(link_key)" ;;
dir)
	out=$(output_dir)
	[[ -f $out/python.wasm ]] || { echo "python-wasi: not built for this recipe ($out); run: make python-wasi" >&2; exit 1; }
	echo "$out"
	;;
build)
	install_deps
	cdir=$(cpython_dir)
	if [[ -f $cdir/lib/libpython3.11.a ]]; then
		log "cpython stage cached: $cdir"
	else
		log "cpython stage not cached, building: $cdir"
		"$PYWASI_DIR/build-cpython.sh" "$cdir"
	fi
	out=$(output_dir)
	if [[ -f $out/python.wasm ]]; then
		log "interpreter cached: $out"
	else
		"$PYWASI_DIR/link.sh" "$cdir" "$out"
	fi
	echo "$out"
	;;
*) echo "usage: $0 [build|deps|dir|key]" >&2; exit 2 ;;
esac
