// Package wasmbin reads and writes the WebAssembly binary format at the
// level the build and the runtime need: split a module into sections, read
// LEB128 numbers, names and constant expressions, and put sections back
// together. It knows no semantics; internal/interruptpass and
// runtime's image preparation build on it.
package wasmbin

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Section ids of the core format.
const (
	SecCustom    = 0
	SecType      = 1
	SecImport    = 2
	SecFunction  = 3
	SecTable     = 4
	SecMemory    = 5
	SecGlobal    = 6
	SecExport    = 7
	SecStart     = 8
	SecElement   = 9
	SecCode      = 10
	SecData      = 11
	SecDataCount = 12
)

// Import and export kinds.
const (
	KindFunc   = 0x00
	KindTable  = 0x01
	KindMemory = 0x02
	KindGlobal = 0x03
)

// Magic is the module preamble: "\0asm" and version 1.
var Magic = []byte("\x00asm\x01\x00\x00\x00")

// Section is one section of a module; Body aliases the module's bytes.
type Section struct {
	ID   byte
	Body []byte
}

// Split checks the preamble and returns the module's sections in order.
func Split(module []byte) ([]Section, error) {
	if len(module) < 8 || !bytes.Equal(module[:4], Magic[:4]) {
		return nil, errors.New("wasmbin: not a WebAssembly module")
	}
	var secs []Section
	r := Reader{B: module[8:]}
	for !r.Done() {
		id := r.Byte()
		n := r.U32()
		body := r.Bytes(int(n))
		if r.Err != nil {
			return nil, fmt.Errorf("wasmbin: section %d: %w", id, r.Err)
		}
		secs = append(secs, Section{ID: id, Body: body})
	}
	return secs, nil
}

// Join encodes sections back into a module after the preamble.
func Join(secs []Section) []byte {
	n := len(Magic)
	for _, s := range secs {
		n += 6 + len(s.Body)
	}
	out := make([]byte, 0, n)
	out = append(out, Magic...)
	for _, s := range secs {
		out = append(out, s.ID)
		out = AppendU32(out, uint32(len(s.Body)))
		out = append(out, s.Body...)
	}
	return out
}

// Find returns the body of the first section with the id, or nil.
func Find(secs []Section, id byte) []byte {
	for _, s := range secs {
		if s.ID == id {
			return s.Body
		}
	}
	return nil
}

// Reader reads values off B from Pos. The first failure is kept in Err and
// every later read returns zero values, so a caller checks Err once.
type Reader struct {
	B   []byte
	Pos int
	Err error
}

// ErrShort is the error of a read past the end of the data.
var ErrShort = errors.New("wasmbin: unexpected end of data")

// Done reports whether all was read or a read failed.
func (r *Reader) Done() bool { return r.Err != nil || r.Pos >= len(r.B) }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.Pos >= len(r.B) {
		r.Err = ErrShort
		return 0
	}
	c := r.B[r.Pos]
	r.Pos++
	return c
}

// Bytes reads n bytes, aliasing B.
func (r *Reader) Bytes(n int) []byte {
	if n < 0 || r.Pos+n > len(r.B) {
		r.Err = ErrShort
		return nil
	}
	s := r.B[r.Pos : r.Pos+n]
	r.Pos += n
	return s
}

// U32 reads an unsigned LEB128 u32.
func (r *Reader) U32() uint32 {
	v, n := binary.Uvarint(r.B[min(r.Pos, len(r.B)):])
	if n <= 0 || v > 1<<32-1 {
		r.Err = ErrShort
		return 0
	}
	r.Pos += n
	return uint32(v)
}

// S32 reads a signed LEB128 i32.
func (r *Reader) S32() int32 { return int32(r.SLEB()) }

// SLEB reads a signed LEB128 of up to 64 bits.
func (r *Reader) SLEB() int64 {
	var result int64
	var shift uint
	for {
		c := r.Byte()
		if r.Err != nil {
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
			r.Err = errors.New("wasmbin: LEB128 too long")
			return 0
		}
	}
}

// Name reads a length-prefixed UTF-8 name.
func (r *Reader) Name() string { return string(r.Bytes(int(r.U32()))) }

// Limits reads the limits of a table or memory type.
func (r *Reader) Limits() (min uint32, max uint32, hasMax bool) {
	flags := r.Byte()
	min = r.U32()
	if flags&1 != 0 {
		return min, r.U32(), true
	}
	return min, 0, false
}

// SkipConstExpr skips the immediate of a constant expression's first
// instruction op (other than i32.const, which callers read themselves).
func (r *Reader) SkipConstExpr(op byte) error {
	switch op {
	case 0x41:
		r.SLEB()
	case 0x42:
		r.SLEB()
	case 0x43:
		r.Bytes(4)
	case 0x44:
		r.Bytes(8)
	case 0x23, 0xd2:
		r.U32()
	case 0xd0:
		r.Byte()
	default:
		return fmt.Errorf("wasmbin: unsupported constant expression %#x", op)
	}
	return nil
}

// AppendU32 appends v as unsigned LEB128.
func AppendU32(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

// AppendS32 appends v as signed LEB128.
func AppendS32(b []byte, v int32) []byte {
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
