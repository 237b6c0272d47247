#!/usr/bin/env bash
# Stage 1 of the recipe: zlib, SQLite and CPython 3.11 for wasm32-wasi, from
# Debian's source packages. Produces, in the directory given as $1:
#   lib/libpython3.11.a lib/libz.a lib/libsqlite3.a   static libraries
#   lib/python311.zip                                 the stdlib as .pyc
#   bin/python.wasm                                   CPython's own command link
#   include/                                          headers for the guest C module
#   Lib-test.tar.gz                                   Lib/test for the regression target
#   modules.txt                                       builtin module names
# This stage takes minutes; build.sh caches its output by cpython_key.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=$1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/python-wasi.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
JOBS=$(nproc)
SYSROOT=$WORK/sysroot
DEPS=$WORK/deps
make_sysroot "$SYSROOT"
mkdir -p "$DEPS/include" "$DEPS/lib"

WASI_CC="$CLANG --target=wasm32-wasi --sysroot=$SYSROOT"

# clang runs wasm-opt by itself after any link with -O when it finds one on
# PATH. Binaryen 108 cannot parse the signature-mismatch stubs that configure's
# link tests produce, which silently turns features off (e.g. _sqlite3). The
# recipe runs wasm-opt itself, in link.sh, so here it is a no-op.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexit 0\n' >"$WORK/bin/wasm-opt"
chmod +x "$WORK/bin/wasm-opt"
export PATH="$WORK/bin:$PATH"
OPT_CFLAGS=$RECIPE_CFLAGS

# --- sources --------------------------------------------------------------
fetch_sources() {
	local dl=$WORK/dl pkg ver file sum
	mkdir -p "$dl"
	while read -r pkg ver file sum; do
		[[ -z $pkg || $pkg == \#* ]] && continue
		local cached=$CACHE_ROOT/sources/$file
		if [[ ! -f $cached ]] || ! echo "$sum  $cached" | sha256sum -c --status; then
			log "downloading Debian source package $pkg=$ver"
			(cd "$dl" && apt-get source --download-only "$pkg=$ver" >"$WORK/apt-$pkg.log" 2>&1) ||
				die "apt-get source $pkg=$ver failed (is a deb-src entry configured? see $WORK/apt-$pkg.log): $(tail -3 "$WORK/apt-$pkg.log")"
			mkdir -p "$CACHE_ROOT/sources"
			cp "$dl/$file" "$cached.tmp" && mv "$cached.tmp" "$cached"
		fi
		echo "$sum  $cached" | sha256sum -c --status || die "$file: SHA-256 mismatch (expected $sum)"
		log "verified $file"
	done <"$PYWASI_DIR/sources.lock"
}

src() { printf '%s/sources/%s\n' "$CACHE_ROOT" "$(awk -v p="$1" '$1==p {print $3}' "$PYWASI_DIR/sources.lock")"; }

# --- zlib -----------------------------------------------------------------
build_zlib() {
	log "zlib: configure and build"
	mkdir -p "$WORK/zlib" && tar xjf "$(src zlib)" -C "$WORK/zlib" --strip-components=1
	(cd "$WORK/zlib" &&
		CC="$WASI_CC" CFLAGS="$OPT_CFLAGS" AR="$LLVM_AR" RANLIB="$LLVM_RANLIB" \
			CHOST=wasm32 ./configure --static --prefix="$DEPS" >"$WORK/zlib.log" 2>&1 &&
		make -j"$JOBS" libz.a >>"$WORK/zlib.log" 2>&1 &&
		cp libz.a "$DEPS/lib/" && cp zlib.h zconf.h "$DEPS/include/") ||
		die "zlib build failed: $(tail -20 "$WORK/zlib.log")"
}

# --- SQLite ---------------------------------------------------------------
# SQLite has no WASI port: no mmap, no dlopen, no threads and no POSIX file
# locks in WASI preview 1. The amalgamation is generated with host tools, then
# compiled for wasm32 with those features compiled out. Its unix VFS locks
# through wsgi_wasm_sqlite_fcntl, which the guest (guest/wsgi_fcntl.c) sends
# to the host's file_lock (hostabi/ABI.md). HAVE_USLEEP=1 makes the busy
# handler retry after 1 to 100 ms rather than whole seconds.
SQLITE_DEFINES=(
	-DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_WAL
	-DSQLITE_MAX_MMAP_SIZE=0 -DSQLITE_OMIT_DEPRECATED
	-DSQLITE_DEFAULT_FOREIGN_KEYS=0 -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1
	-DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_TEMP_STORE=3
	-DSQLITE_ENABLE_LOCKING_STYLE=0 -DHAVE_USLEEP=1 -DSQLITE_NOHAVE_SYSTEM
	-D_WASI_EMULATED_GETPID
)
build_sqlite() {
	log "sqlite: generate the amalgamation with host tools"
	mkdir -p "$WORK/sqlite-host" && tar xJf "$(src sqlite3)" -C "$WORK/sqlite-host" --strip-components=1
	(cd "$WORK/sqlite-host" && ./configure --disable-tcl >"$WORK/sqlite.log" 2>&1 &&
		make sqlite3.c >>"$WORK/sqlite.log" 2>&1) ||
		die "sqlite amalgamation failed: $(tail -20 "$WORK/sqlite.log")"
	log "sqlite: compile for wasm32-wasi"
	(cd "$WORK/sqlite-host" &&
		$WASI_CC $OPT_CFLAGS "${SQLITE_DEFINES[@]}" -include "$PYWASI_DIR/sqlite/wasi_compat.h" \
			-c sqlite3.c -o sqlite3.o >>"$WORK/sqlite.log" 2>&1 &&
		$WASI_CC $OPT_CFLAGS -c "$PYWASI_DIR/sqlite/wasi_compat.c" -o wasi_compat.o >>"$WORK/sqlite.log" 2>&1 &&
		$LLVM_AR rcs "$DEPS/lib/libsqlite3.a" sqlite3.o wasi_compat.o &&
		cp sqlite3.h sqlite3ext.h "$DEPS/include/") ||
		die "sqlite wasm build failed: $(tail -30 "$WORK/sqlite.log")"
}

# --- CPython --------------------------------------------------------------
build_cpython() {
	local srcdir=$WORK/cpython
	mkdir -p "$srcdir" && tar xzf "$(src python3.11)" -C "$srcdir" --strip-components=1
	local p
	for p in "$PYWASI_DIR"/patches/*.patch; do
		[[ -e $p ]] || continue
		log "cpython: apply $(basename "$p")"
		patch -d "$srcdir" -p1 --quiet <"$p" || die "patch $p does not apply"
	done
	cat "$srcdir/Tools/wasm/config.site-wasm32-wasi" "$PYWASI_DIR/config.site" >"$WORK/config.site"
	log "cpython: configure (takes a few minutes)"
	mkdir -p "$WORK/cpython-build"
	(cd "$WORK/cpython-build" &&
		CONFIG_SITE=$WORK/config.site \
			CC="$WASI_CC" CPP="$WASI_CC -E" AR="$LLVM_AR" RANLIB="$LLVM_RANLIB" LLVM_AR="$LLVM_AR" \
			CFLAGS="$OPT_CFLAGS -Wno-int-conversion" \
			LDFLAGS="-Wl,-z,stack-size=8388608" \
			PKG_CONFIG=false \
			ZLIB_CFLAGS="-I$DEPS/include" ZLIB_LIBS="-L$DEPS/lib -lz" \
			LIBSQLITE3_CFLAGS="-I$DEPS/include" LIBSQLITE3_LIBS="-L$DEPS/lib -lsqlite3 -lwasi-emulated-getpid -lm" \
			"$srcdir/configure" -C --host=wasm32-unknown-wasi --build="$("$srcdir/config.guess")" \
			--with-build-python="$BUILD_PYTHON" --prefix=/usr/local \
			--disable-test-modules --without-ensurepip --disable-ipv6 $RECIPE_CONFIGURE \
			>"$WORK/configure.log" 2>&1) ||
		die "configure failed: $(tail -30 "$WORK/configure.log")"
	log "cpython: make -j$JOBS"
	(cd "$WORK/cpython-build" && make -j"$JOBS" >"$WORK/make.log" 2>&1) ||
		die "make failed: $(grep -E 'error|Error' "$WORK/make.log" | tail -30)"
	grep -A40 'The necessary bits' "$WORK/make.log" >&2 || true
}

install_outputs() {
	local b=$WORK/cpython-build srcdir=$WORK/cpython stage=$OUT.partial
	rm -rf "$stage" && mkdir -p "$stage/lib" "$stage/bin" "$stage/include/python3.11" "$stage/objs"
	cp "$b/libpython3.11.a" "$DEPS/lib/libz.a" "$DEPS/lib/libsqlite3.a" "$stage/lib/"
	cp "$b/Modules/_decimal/libmpdec/libmpdec.a" "$b/Modules/expat/libexpat.a" "$stage/lib/"
	mkdir -p "$stage/logs" && cp "$WORK"/*.log "$b/config.log" "$stage/logs/"
	cp "$b/python.wasm" "$stage/bin/python.wasm"
	cp "$b/Programs/python.o" "$stage/objs/"
	cp -r "$srcdir/Include/." "$stage/include/python3.11/"
	cp "$b/pyconfig.h" "$stage/include/python3.11/"
	# The libraries the interpreter links against, as CPython's Makefile says.
	printf 'print-libs:\n\t@echo $(LIBS) $(MODLIBS) $(SYSLIBS) $(LINKFORSHARED) $(PY_CORE_LDFLAGS)\n' >"$WORK/print-libs.mk"
	make -s -C "$b" -f Makefile -f "$WORK/print-libs.mk" print-libs |
		sed 's|Modules/_decimal/libmpdec/libmpdec.a|-lmpdec|; s|Modules/expat/libexpat.a|-lexpat|' >"$stage/link-libs.txt"
	"$BUILD_PYTHON" - "$b" >"$stage/modules.txt" <<-'EOF'
		import re, sys
		text = open(sys.argv[1] + "/Modules/config.c").read()
		print("\n".join(sorted(set(re.findall(r'\{"([A-Za-z0-9_.]+)", PyInit_', text)))))
	EOF
	log "stdlib: compile to .pyc and zip"
	"$BUILD_PYTHON" "$PYWASI_DIR/make_stdlib_zip.py" "$srcdir/Lib" \
		"$(cat "$b/pybuilddir.txt" | sed "s|^|$b/|")" \
		"$PYWASI_DIR/stdlib-exclude.txt" "$stage/lib/python311.zip"
	tar czf "$stage/Lib-test.tar.gz" -C "$srcdir" Lib/test
	toolchain_fingerprint >"$stage/toolchain.txt"
	rm -rf "$OUT" && mv "$stage" "$OUT"
}

start=$(date +%s)
fetch_sources
build_zlib
build_sqlite
build_cpython
install_outputs
log "cpython stage done in $(($(date +%s) - start)) s"
echo "$(($(date +%s) - start))" >"$OUT/build-seconds.txt"
