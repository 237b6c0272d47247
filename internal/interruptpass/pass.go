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
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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

const (
	secImport = 2
	secGlobal = 6
	secExport = 7
	secCode   = 10
)

type section struct {
	id   byte
	body []byte
}

// Rewrite returns the instrumented module.
func Rewrite(module []byte, opts Options) ([]byte, Stats, error) {
	var st Stats
	if len(module) < 8 || !bytes.Equal(module[:4], []byte("\x00asm")) {
		return nil, st, errors.New("interruptpass: not a WebAssembly module")
	}
	secs, err := splitSections(module[8:])
	if err != nil {
		return nil, st, err
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

	out := bytes.NewBuffer(make([]byte, 0, len(module)+len(module)/8))
	out.Write(module[:8])
	for _, s := range secs {
		body := s.body
		if s.id == secCode {
			body, err = rewriteCode(s.body, check, &st)
			if err != nil {
				return nil, st, err
			}
		}
		out.WriteByte(s.id)
		out.Write(appendU32(nil, uint32(len(body))))
		out.Write(body)
	}
	return out.Bytes(), st, nil
}

// checkSequence encodes: i32.const flag; i32.load align=2 offset=0; if; call f; end.
func checkSequence(flag, funcIdx uint32) []byte {
	b := []byte{0x41}
	b = appendS32(b, int32(flag))
	b = append(b, 0x28, 0x02, 0x00, 0x04, 0x40, 0x10)
	b = appendU32(b, funcIdx)
	return append(b, 0x0b)
}

func splitSections(b []byte) ([]section, error) {
	var secs []section
	r := reader{b: b}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("interruptpass: section %d: %w", id, r.err)
		}
		secs = append(secs, section{id: id, body: body})
	}
	return secs, nil
}

func findSection(secs []section, id byte) []byte {
	for _, s := range secs {
		if s.id == id {
			return s.body
		}
	}
	return nil
}

// findImport returns the function index of the interrupt import and the
// number of imported globals (global indices count them first).
func findImport(secs []section, opts Options) (uint32, uint32, error) {
	r := reader{b: findSection(secs, secImport)}
	var funcs, globals uint32
	found, idx := false, uint32(0)
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		mod, name := r.name(), r.name()
		switch kind := r.byte(); kind {
		case 0x00: // func
			r.u32()
			if mod == opts.ImportModule && name == opts.ImportName {
				found, idx = true, funcs
			}
			funcs++
		case 0x01: // table
			r.byte()
			r.limits()
		case 0x02: // memory
			r.limits()
		case 0x03: // global
			r.byte()
			r.byte()
			globals++
		default:
			return 0, 0, fmt.Errorf("interruptpass: unknown import kind %#x", kind)
		}
	}
	if r.err != nil {
		return 0, 0, fmt.Errorf("interruptpass: import section: %w", r.err)
	}
	if !found {
		return 0, 0, fmt.Errorf("interruptpass: module does not import %s.%s", opts.ImportModule, opts.ImportName)
	}
	return idx, globals, nil
}

// findFlag returns the i32.const initialiser of the exported global.
func findFlag(secs []section, export string, importedGlobals uint32) (uint32, error) {
	r := reader{b: findSection(secs, secExport)}
	globalIdx, found := uint32(0), false
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		name, kind, idx := r.name(), r.byte(), r.u32()
		if name == export && kind == 0x03 {
			globalIdx, found = idx, true
		}
	}
	if !found || r.err != nil {
		return 0, fmt.Errorf("interruptpass: no exported global %q", export)
	}
	if globalIdx < importedGlobals {
		return 0, fmt.Errorf("interruptpass: global %q is imported, want a defined constant", export)
	}
	r = reader{b: findSection(secs, secGlobal)}
	for i, n := uint32(0), r.u32(); i < n && r.err == nil; i++ {
		r.byte() // valtype
		r.byte() // mutability
		op := r.byte()
		var v int32
		if op == 0x41 {
			v = r.s32()
		} else {
			if err := r.skipConstExpr(op); err != nil {
				return 0, err
			}
		}
		if r.byte() != 0x0b {
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
	r := reader{b: b}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/8), n)
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("interruptpass: code entry %d: %w", i, r.err)
		}
		nb, loops, err := rewriteBody(body, check)
		if err != nil {
			return nil, fmt.Errorf("interruptpass: function body %d: %w", i, err)
		}
		st.Functions++
		st.Loops += loops
		out = appendU32(out, uint32(len(nb)))
		out = append(out, nb...)
	}
	return out, nil
}

func rewriteBody(body []byte, check []byte) ([]byte, int, error) {
	r := reader{b: body}
	for groups := r.u32(); groups > 0 && r.err == nil; groups-- {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	out := make([]byte, 0, len(body)+64)
	out = append(out, body[:r.pos]...)
	loops := 0
	for !r.done() {
		start := r.pos
		op := r.byte()
		if err := r.skipImmediates(op); err != nil {
			return nil, 0, err
		}
		if r.err != nil {
			return nil, 0, r.err
		}
		out = append(out, body[start:r.pos]...)
		if op == 0x03 { // loop: the check runs at the head of every iteration
			out = append(out, check...)
			loops++
		}
	}
	return out, loops, nil
}

type reader struct {
	b   []byte
	pos int
	err error
}

var errShort = errors.New("unexpected end of data")

func (r *reader) done() bool { return r.err != nil || r.pos >= len(r.b) }

func (r *reader) byte() byte {
	if r.pos >= len(r.b) {
		r.err = errShort
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || r.pos+n > len(r.b) {
		r.err = errShort
		return nil
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s
}

func (r *reader) u32() uint32 {
	v, n := binary.Uvarint(r.b[min(r.pos, len(r.b)):])
	if n <= 0 || v > 1<<32-1 {
		r.err = errShort
		return 0
	}
	r.pos += n
	return uint32(v)
}

func (r *reader) s32() int32 { return int32(r.sleb()) }

func (r *reader) sleb() int64 {
	var result int64
	var shift uint
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		result |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				result |= -1 << shift
			}
			return result
		}
		if shift > 70 {
			r.err = errors.New("LEB128 too long")
			return 0
		}
	}
}

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) limits() {
	if flags := r.byte(); flags&1 != 0 {
		r.u32()
		r.u32()
	} else {
		r.u32()
	}
}

func (r *reader) skipConstExpr(op byte) error {
	switch op {
	case 0x42:
		r.sleb()
	case 0x43:
		r.bytes(4)
	case 0x44:
		r.bytes(8)
	case 0x23, 0xd2:
		r.u32()
	case 0xd0:
		r.byte()
	default:
		return fmt.Errorf("interruptpass: unsupported constant expression %#x", op)
	}
	return nil
}

func (r *reader) blockType() {
	c := r.b[min(r.pos, len(r.b)-1)]
	switch c {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.pos++
	default:
		r.sleb() // s33 type index
	}
}

func (r *reader) memarg() { r.u32(); r.u32() }

// skipImmediates advances past the immediates of op (WebAssembly 2.0 core
// instructions without SIMD and exceptions, which the interpreter does not
// use; they are rejected rather than misread).
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04:
		r.blockType()
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0xd2 ||
		(op >= 0x20 && op <= 0x26):
		r.u32()
	case op == 0x0e:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.u32()
		}
		r.u32()
	case op == 0x11 || op == 0x13:
		r.u32()
		r.u32()
	case op == 0x1c:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.byte()
		}
	case op >= 0x28 && op <= 0x3e:
		r.memarg()
	case op == 0x3f || op == 0x40:
		r.byte()
	case op == 0x41:
		r.sleb()
	case op == 0x42:
		r.sleb()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0:
		r.byte()
	case op == 0xfc:
		sub := r.u32()
		switch {
		case sub <= 7:
		case sub == 8:
			r.u32()
			r.byte()
		case sub == 9 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
			r.u32()
		case sub == 10:
			r.byte()
			r.byte()
		case sub == 11:
			r.byte()
		case sub == 12 || sub == 14:
			r.u32()
			r.u32()
		default:
			return fmt.Errorf("unsupported 0xfc instruction %d", sub)
		}
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b ||
		op == 0xd1 || (op >= 0x45 && op <= 0xc4):
		// no immediates
	default:
		return fmt.Errorf("unsupported opcode %#x at offset %d", op, r.pos-1)
	}
	return nil
}

func appendU32(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

func appendS32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
