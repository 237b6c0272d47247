"""Compile CPython's Lib/ to .pyc and write them to one zip for the guest.

Usage: make_stdlib_zip.py LIB_DIR BUILD_LIB_DIR EXCLUDE_FILE OUT_ZIP

Only .pyc files go in (unchecked-hash, so zipimport never stats a source);
BUILD_LIB_DIR adds the generated _sysconfigdata module of the wasm build.
Entries are sorted and dated 1980-01-01 so the zip is reproducible.
"""
import importlib.util
import os
import sys
import zipfile


def excluded_names(path):
    with open(path) as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


def python_sources(root, excluded):
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        top = rel.split(os.sep)[0]
        if rel != "." and (top in excluded or "__pycache__" in rel.split(os.sep)):
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            relfile = os.path.normpath(os.path.join(rel, name))
            if relfile in excluded:
                continue
            yield os.path.join(dirpath, name), relfile


def compile_source(path, relfile):
    with open(path, "rb") as f:
        source = f.read()
    code = compile(source, relfile, "exec", dont_inherit=True, optimize=0)
    flags = 0b11  # hash-based, unchecked
    data = bytearray(importlib.util.MAGIC_NUMBER)
    data += flags.to_bytes(4, "little")
    data += importlib.util.source_hash(source)
    import marshal
    data += marshal.dumps(code)
    return bytes(data)


def main():
    lib_dir, build_lib, exclude_file, out = sys.argv[1:5]
    excluded = excluded_names(exclude_file)
    entries = {}
    for root in (lib_dir, build_lib):
        for path, relfile in python_sources(root, excluded):
            entries[relfile[:-3] + ".pyc"] = compile_source(path, relfile)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name])
    os.replace(tmp, out)
    print(f"{out}: {len(entries)} modules", file=sys.stderr)


if __name__ == "__main__":
    main()
