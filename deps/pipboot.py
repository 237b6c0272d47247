# Runs pip (argv[1]: the pip wheel, put on sys.path) inside the sandbox with
# argv[2:] as its arguments. WASI's CPython lacks three things pip touches
# but does not need for `install --no-index --target`: the mmap module
# (imported by its vendored cachecontrol and rich, used only for caching and
# progress bars, both off), os.umask and os.chmod (file modes mean nothing in
# the sandbox's file system).
import os
import runpy
import sys
import types

try:
    import mmap  # noqa: F401
except ImportError:
    stub = types.ModuleType("mmap")

    class _NoMmap:
        def __init__(self, *args, **kwargs):
            raise OSError("mmap is not available in the sandbox")

    stub.mmap = _NoMmap
    stub.ACCESS_READ, stub.ACCESS_WRITE, stub.ACCESS_COPY, stub.PAGESIZE = 1, 2, 3, 65536
    sys.modules["mmap"] = stub
if not hasattr(os, "umask"):
    os.umask = lambda mask: 0o022
if not hasattr(os, "chmod"):
    os.chmod = lambda *args, **kwargs: None
sys.path.insert(0, sys.argv[1])
sys.argv = ["pip"] + sys.argv[2:]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
