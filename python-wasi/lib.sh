# shellcheck shell=bash
# Shared definitions for the python-wasi recipe: toolchain, cache layout and
# cache keys. Sourced by build.sh; not meant to be run on its own.

PYWASI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$PYWASI_DIR")

# Debian packages the recipe needs on the build machine.
TOOLCHAIN_PACKAGES=(clang-19 lld-19 llvm-19 libclang-rt-19-dev-wasm32 wasi-libc binaryen
	python3.11 tcl dpkg-dev make xz-utils bzip2 zip)

CLANG=clang-19
LLVM_AR=llvm-ar-19
LLVM_RANLIB=llvm-ranlib-19
LLVM_STRIP=llvm-strip-19
WASM_OPT=wasm-opt
BUILD_PYTHON=/usr/bin/python3.11

# Build options, overridable for trials (speed.py --trials); part of the keys.
RECIPE_CFLAGS=${WSGI_WASM_CFLAGS:--O2}
# pymalloc is off by default on WASI; measured faster here (TRIALS.md).
RECIPE_CONFIGURE=${WSGI_WASM_CONFIGURE:---with-pymalloc}
RECIPE_WASM_OPT=${WSGI_WASM_OPT:--O2}

CACHE_ROOT=${WSGI_WASM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wsgi-wasm}/python-wasi

log() { printf '[python-wasi %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[python-wasi] error: %s\n' "$*" >&2; exit 1; }

# toolchain_fingerprint prints the exact versions of every Debian package the
# build uses, so that a toolchain upgrade changes the cache key.
toolchain_fingerprint() {
	dpkg-query -W -f '${Package} ${Version}\n' clang-19 lld-19 llvm-19 \
		libclang-rt-19-dev-wasm32 wasi-libc binaryen python3.11 2>/dev/null | sort
}

# hash_files prints one SHA-256 over the names and contents of the given files.
hash_files() {
	local f
	for f in "$@"; do
		printf '%s\n' "${f#"$REPO_DIR"/}"
		sha256sum <"$f"
	done | sha256sum | cut -c1-16
}

# cpython_key covers everything that goes into libpython and the stdlib zip.
cpython_key() {
	local patches=()
	shopt -s nullglob
	patches=("$PYWASI_DIR"/patches/*.patch)
	shopt -u nullglob
	{
		hash_files "$PYWASI_DIR/lib.sh" "$PYWASI_DIR/build-cpython.sh" \
			"$PYWASI_DIR/sources.lock" "$PYWASI_DIR/config.site" \
			"$PYWASI_DIR/stdlib-exclude.txt" "$PYWASI_DIR/make_stdlib_zip.py" \
			"$PYWASI_DIR"/sqlite/* "${patches[@]}"
		toolchain_fingerprint
		printf 'cflags=%s\nconfigure=%s\n' "$RECIPE_CFLAGS" "$RECIPE_CONFIGURE"
	} | sha256sum | cut -c1-16
}

# link_key covers the CPython stage plus the guest C sources and link flags.
link_key() {
	{
		cpython_key
		hash_files "$PYWASI_DIR/link.sh" "$PYWASI_DIR"/guest/* \
			"$PYWASI_DIR"/tools/interruptpass/*.go "$REPO_DIR"/internal/interruptpass/pass.go "$REPO_DIR"/internal/wasmbin/wasmbin.go \
			"$REPO_DIR"/hostabi/hostabi.go
		printf 'wasm-opt=%s\n' "$RECIPE_WASM_OPT"
	} | sha256sum | cut -c1-16
}

cpython_dir() { printf '%s/cpython-%s\n' "$CACHE_ROOT" "$(cpython_key)"; }
output_dir() { printf '%s/interp-%s\n' "$CACHE_ROOT" "$(link_key)"; }

# The sysroot holds only wasi-libc, so that host headers and libraries under
# /usr/include and /usr/local never leak into a wasm32 build.
make_sysroot() {
	local root=$1
	mkdir -p "$root/lib"
	ln -sfn /usr/include/wasm32-wasi "$root/include"
	ln -sfn /usr/lib/wasm32-wasi "$root/lib/wasm32-wasi"
}
