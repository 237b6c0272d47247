// Package interruptpass rewrites a WebAssembly module so that the host can
// stop it cheaply, in the manner of wasmtime's epoch interruption.
//
// wazero cannot preempt guest code, and its own remedy (WithCloseOnContextDone)
// checks the context at every loop iteration at a cost of about 2.7x for
// CPython. This pass instead inserts, at the head of every loop body,
//
//	i32.const FLAG ; i32.load ; if ; call $interrupt ; end
//
// where FLAG is the linear-memory address of a guest word (the exported
// global named by Options.FlagExport) and $interrupt is the imported host
// function named by Options.ImportModule/ImportName. While the word is 0 a
// loop iteration pays one load and one branch. The host sets the word from
// another goroutine; the guest's next loop iteration then calls the host,
// which traps when a deadline has passed and otherwise returns (giving Go's
// scheduler and garbage collector a safe point). See hostabi/ABI.md
// "Interruption".
//
// Only instructions are rewritten: no function, type or global index changes,
// so every other section is copied unchanged. Custom sections that refer to
// code offsets (DWARF, name maps stay valid) go stale; strip them before.
package interruptpass

import (
	"errors"
	"fmt"

	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
)

// Options name the pieces of the module the inserted check uses.
type Options struct {
	ImportModule, ImportName string // the host function to call
	FlagExport               string // exported i32 global holding the flag address
}

// Stats describe one rewrite.
type Stats struct {
	Functions int // function bodies rewritten
	Loops     int // checks inserted
	FlagAddr  uint32
	FuncIndex uint32
}

// reader adds instruction decoding to wasmbin.Reader.
type reader struct{ wasmbin.Reader }

// Rewrite returns the instrumented module.
func Rewrite(module []byte, opts Options) ([]byte, Stats, error) {
	var st Stats
	secs, err := wasmbin.Split(module)
	if err != nil {
		return nil, st, fmt.Errorf("interruptpass: %w", err)
	}
	funcIdx, importedGlobals, err := findImport(secs, opts)
	if err != nil {
		return nil, st, err
	}
	flag, err := findFlag(secs, opts.FlagExport, importedGlobals)
	if err != nil {
		return nil, st, err
	}
	st.FuncIndex, st.FlagAddr = funcIdx, flag
	check := checkSequence(flag, funcIdx)

	for i := range secs {
		if secs[i].ID == wasmbin.SecCode {
			if secs[i].Body, err = rewriteCode(secs[i].Body, check, &st); err != nil {
				return nil, st, err
			}
		}
	}
	return wasmbin.Join(secs), st, nil
}

// checkSequence encodes: i32.const flag; i32.load align=2 offset=0; if; call f; end.
func checkSequence(flag, funcIdx uint32) []byte {
	b := []byte{0x41}
	b = wasmbin.AppendS32(b, int32(flag))
	b = append(b, 0x28, 0x02, 0x00, 0x04, 0x40, 0x10)
	b = wasmbin.AppendU32(b, funcIdx)
	return append(b, 0x0b)
}

// findImport returns the function index of the interrupt import and the
// number of imported globals (global indices count them first).
func findImport(secs []wasmbin.Section, opts Options) (uint32, uint32, error) {
	r := reader{wasmbin.Reader{B: wasmbin.Find(secs, wasmbin.SecImport)}}
	var funcs, globals uint32
	found, idx := false, uint32(0)
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		mod, name := r.Name(), r.Name()
		switch kind := r.Byte(); kind {
		case 0x00: // func
			r.U32()
			if mod == opts.ImportModule && name == opts.ImportName {
				found, idx = true, funcs
			}
			funcs++
		case 0x01: // table
			r.Byte()
			r.Limits()
		case 0x02: // memory
			r.Limits()
		case 0x03: // global
			r.Byte()
			r.Byte()
			globals++
		default:
			return 0, 0, fmt.Errorf("interruptpass: unknown import kind %#x", kind)
		}
	}
	if r.Err != nil {
		return 0, 0, fmt.Errorf("interruptpass: import section: %w", r.Err)
	}
	if !found {
		return 0, 0, fmt.Errorf("interruptpass: module does not import %s.%s", opts.ImportModule, opts.ImportName)
	}
	return idx, globals, nil
}

// findFlag returns the i32.const initialiser of the exported global.
func findFlag(secs []wasmbin.Section, export string, importedGlobals uint32) (uint32, error) {
	r := reader{wasmbin.Reader{B: wasmbin.Find(secs, wasmbin.SecExport)}}
	globalIdx, found := uint32(0), false
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		name, kind, idx := r.Name(), r.Byte(), r.U32()
		if name == export && kind == 0x03 {
			globalIdx, found = idx, true
		}
	}
	if !found || r.Err != nil {
		return 0, fmt.Errorf("interruptpass: no exported global %q", export)
	}
	if globalIdx < importedGlobals {
		return 0, fmt.Errorf("interruptpass: global %q is imported, want a defined constant", export)
	}
	r = reader{wasmbin.Reader{B: wasmbin.Find(secs, wasmbin.SecGlobal)}}
	for i, n := uint32(0), r.U32(); i < n && r.Err == nil; i++ {
		r.Byte() // valtype
		r.Byte() // mutability
		op := r.Byte()
		var v int32
		if op == 0x41 {
			v = r.S32()
		} else {
			if err := r.SkipConstExpr(op); err != nil {
				return 0, err
			}
		}
		if r.Byte() != 0x0b {
			return 0, errors.New("interruptpass: global initialiser is not a single constant")
		}
		if i+importedGlobals == globalIdx {
			if op != 0x41 {
				return 0, fmt.Errorf("interruptpass: global %q is not an i32.const", export)
			}
			if v%4 != 0 {
				return 0, fmt.Errorf("interruptpass: flag address %d is not 4-byte aligned", v)
			}
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("interruptpass: global %q not found in the global section", export)
}

func rewriteCode(b []byte, check []byte, st *Stats) ([]byte, error) {
	r := reader{wasmbin.Reader{B: b}}
	n := r.U32()
	out := wasmbin.AppendU32(make([]byte, 0, len(b)+len(b)/8), n)
	for i := uint32(0); i < n; i++ {
		size := r.U32()
		body := r.Bytes(int(size))
		if r.Err != nil {
			return nil, fmt.Errorf("interruptpass: code entry %d: %w", i, r.Err)
		}
		nb, loops, err := rewriteBody(body, check)
		if err != nil {
			return nil, fmt.Errorf("interruptpass: function body %d: %w", i, err)
		}
		st.Functions++
		st.Loops += loops
		out = wasmbin.AppendU32(out, uint32(len(nb)))
		out = append(out, nb...)
	}
	return out, nil
}

func rewriteBody(body []byte, check []byte) ([]byte, int, error) {
	r := reader{wasmbin.Reader{B: body}}
	for groups := r.U32(); groups > 0 && r.Err == nil; groups-- {
		r.U32()
		r.Byte()
	}
	if r.Err != nil {
		return nil, 0, r.Err
	}
	out := make([]byte, 0, len(body)+64)
	out = append(out, body[:r.Pos]...)
	loops := 0
	for !r.Done() {
		start := r.Pos
		op := r.Byte()
		if err := r.skipImmediates(op); err != nil {
			return nil, 0, err
		}
		if r.Err != nil {
			return nil, 0, r.Err
		}
		out = append(out, body[start:r.Pos]...)
		if op == 0x03 { // loop: the check runs at the head of every iteration
			out = append(out, check...)
			loops++
		}
	}
	return out, loops, nil
}

func (r *reader) blockType() {
	c := r.B[min(r.Pos, len(r.B)-1)]
	switch c {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.Pos++
	default:
		r.SLEB() // s33 type index
	}
}

func (r *reader) memarg() { r.U32(); r.U32() }

// skipImmediates advances past the immediates of op (WebAssembly 2.0 core
// instructions without SIMD and exceptions, which the interpreter does not
// use; they are rejected rather than misread).
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04:
		r.blockType()
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0xd2 ||
		(op >= 0x20 && op <= 0x26):
		r.U32()
	case op == 0x0e:
		for n := r.U32(); n > 0 && r.Err == nil; n-- {
			r.U32()
		}
		r.U32()
	case op == 0x11 || op == 0x13:
		r.U32()
		r.U32()
	case op == 0x1c:
		for n := r.U32(); n > 0 && r.Err == nil; n-- {
			r.Byte()
		}
	case op >= 0x28 && op <= 0x3e:
		r.memarg()
	case op == 0x3f || op == 0x40:
		r.Byte()
	case op == 0x41:
		r.SLEB()
	case op == 0x42:
		r.SLEB()
	case op == 0x43:
		r.Bytes(4)
	case op == 0x44:
		r.Bytes(8)
	case op == 0xd0:
		r.Byte()
	case op == 0xfc:
		sub := r.U32()
		switch {
		case sub <= 7:
		case sub == 8:
			r.U32()
			r.Byte()
		case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
			r.U32()
		case sub == 10:
			r.Byte()
			r.Byte()
		case sub == 11:
			r.Byte()
		case sub == 12 || sub == 14:
			r.U32()
			r.U32()
		default:
			return fmt.Errorf("unsupported 0xfc instruction %d", sub)
		}
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b ||
		op == 0xd1 || (op >= 0x45 && op <= 0xc4):
		// no immediates
	default:
		return fmt.Errorf("unsupported opcode %#x at offset %d", op, r.Pos-1)
	}
	return nil
}
