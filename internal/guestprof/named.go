package guestprof

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
)

// NamedInterpreter writes into dir a copy of the interpreter src whose
// python.wasm and python-reactor.wasm are the shipped modules byte for byte
// plus a "name" section, so that a profile names functions, and returns it
// (with a copy of src's lib folder).
//
// The shipped modules are stripped. Their names are recovered from the
// unstripped link output in src's debug folder: DWARF is stripped from it
// (llvm-strip-19 --strip-debug), it is optimised again as link.sh does
// (wasm-opt with $WSGI_WASM_OPT, default -O2) but with -g so the names
// survive, and that name section is appended to the shipped module. wasm-opt
// without DWARF in its input makes code about 1% smaller than the shipped
// build (which it made with DWARF present), so that module is only the
// source of the names: the function indices agree because its imports,
// function types, exports and table elements are identical to the shipped
// module's, which is checked. Needs llvm-strip-19 and wasm-opt (make serve
// installs them); takes about 30 s.
func NamedInterpreter(src pythonwasi.Interpreter, dir string) (pythonwasi.Interpreter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return pythonwasi.Interpreter{}, fmt.Errorf("guestprof: %w", err)
	}
	flags := strings.Fields(os.Getenv("WSGI_WASM_OPT"))
	if len(flags) == 0 {
		flags = []string{"-O2"}
	}
	for _, m := range []string{"python.wasm", "python-reactor.wasm"} {
		out := filepath.Join(dir, m)
		if _, err := os.Stat(out); err == nil {
			continue
		}
		nodwarf, opt := filepath.Join(dir, m+".nodwarf"), filepath.Join(dir, m+".opt")
		for _, cmd := range [][]string{
			{"llvm-strip-19", "--strip-debug", filepath.Join(src.Dir, "debug", m), "-o", nodwarf},
			append(append([]string{"wasm-opt"}, flags...), "-g", nodwarf, "-o", opt),
		} {
			if b, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
				return pythonwasi.Interpreter{}, fmt.Errorf("guestprof: %s: %w: %s", strings.Join(cmd, " "), err, b)
			}
		}
		named, err := graftNames(filepath.Join(src.Dir, m), opt)
		os.Remove(nodwarf)
		os.Remove(opt)
		if err != nil {
			return pythonwasi.Interpreter{}, err
		}
		if err := os.WriteFile(out+".tmp", named, 0o644); err != nil {
			return pythonwasi.Interpreter{}, fmt.Errorf("guestprof: %w", err)
		}
		if err := os.Rename(out+".tmp", out); err != nil {
			return pythonwasi.Interpreter{}, fmt.Errorf("guestprof: %w", err)
		}
	}
	// A copy, not a link: the sandbox's file system follows no symbolic
	// links.
	lib := filepath.Join(dir, "lib")
	if fi, err := os.Lstat(lib); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(lib)
	}
	if _, err := os.Stat(lib); err != nil {
		if err := os.CopyFS(lib, os.DirFS(src.LibDir())); err != nil {
			return pythonwasi.Interpreter{}, fmt.Errorf("guestprof: copy %s: %w", src.LibDir(), err)
		}
	}
	return pythonwasi.Interpreter{Dir: dir}, nil
}

// graftNames returns the module at shipped with the name section of the
// module at named appended, after checking that both index their functions
// alike.
func graftNames(shipped, named string) ([]byte, error) {
	a, err := os.ReadFile(shipped)
	if err != nil {
		return nil, fmt.Errorf("guestprof: %w", err)
	}
	b, err := os.ReadFile(named)
	if err != nil {
		return nil, fmt.Errorf("guestprof: %w", err)
	}
	as, err := wasmbin.Split(a)
	if err != nil {
		return nil, fmt.Errorf("guestprof: %s: %w", shipped, err)
	}
	bs, err := wasmbin.Split(b)
	if err != nil {
		return nil, fmt.Errorf("guestprof: %s: %w", named, err)
	}
	for _, id := range []byte{wasmbin.SecType, wasmbin.SecImport, wasmbin.SecFunction, wasmbin.SecExport, wasmbin.SecElement} {
		if !bytes.Equal(wasmbin.Find(as, id), wasmbin.Find(bs, id)) {
			return nil, fmt.Errorf("guestprof: %s and %s differ in section %d: their function indices may not agree", shipped, named, id)
		}
	}
	var names []byte
	for _, s := range bs {
		if s.ID != wasmbin.SecCustom {
			continue
		}
		r := wasmbin.Reader{B: s.Body}
		if r.Name() == "name" && r.Err == nil {
			names = s.Body
		}
	}
	if names == nil {
		return nil, fmt.Errorf("guestprof: %s has no name section", named)
	}
	return append(wasmbin.Join(as), wasmbin.Join([]wasmbin.Section{{ID: wasmbin.SecCustom, Body: names}})[len(wasmbin.Magic):]...), nil
}
