package sandbox

import (
	"fmt"

	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
)

// globalExportPrefix names the exports that restorable adds for the
// module's mutable globals (the C stack pointer among them).
const globalExportPrefix = "wsgi-wasm:global:"

// restorable is the reactor as the runtime instantiates it: the same code,
// but with its data segments made passive and its mutable globals exported,
// so that an instance can start on a memory that already holds an image
// (the module's initial data, or a snapshot) without instantiation writing
// the initial data over it (ABI.md "Snapshots").
type restorable struct {
	module    []byte
	segments  []dataSegment // the initial data, for fresh instances
	minMemory uint64        // the memory's initial size in bytes
	globals   []string      // export names of the mutable globals, in index order
}

// dataSegment is an active data segment of the original module.
type dataSegment struct {
	offset uint32
	init   []byte
}

// applyTo writes the initial data into a fresh linear memory of minMemory
// bytes, as instantiation of the original module would have.
func (r *restorable) applyTo(mem []byte) {
	for _, s := range r.segments {
		copy(mem[s.offset:], s.init)
	}
}

// makeRestorable rewrites the reactor module. Only the data and export
// sections change: the data segments are taken out (the reactor has
// thousands; instantiating them costs a millisecond) and each mutable
// global is exported as globalExportPrefix + its index. A module with a
// data count section may use memory.init and data.drop, which name
// segments; its active segments become passive instead, keeping their
// indices and bytes.
func makeRestorable(module []byte) (*restorable, error) {
	secs, err := wasmbin.Split(module)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r := &restorable{}
	importedGlobals, err := countImportedGlobals(wasmbin.Find(secs, wasmbin.SecImport))
	if err != nil {
		return nil, err
	}
	mutable, err := mutableGlobals(wasmbin.Find(secs, wasmbin.SecGlobal), importedGlobals)
	if err != nil {
		return nil, err
	}
	hasExports := false
	keepIndices := wasmbin.Find(secs, wasmbin.SecDataCount) != nil
	for i := range secs {
		switch secs[i].ID {
		case wasmbin.SecData:
			if secs[i].Body, r.segments, err = passiveData(secs[i].Body, keepIndices); err != nil {
				return nil, err
			}
		case wasmbin.SecExport:
			hasExports = true
			if secs[i].Body, r.globals, err = exportGlobals(secs[i].Body, mutable); err != nil {
				return nil, err
			}
		}
	}
	if !hasExports {
		return nil, fmt.Errorf("sandbox: reactor has no export section")
	}
	mem := wasmbin.Reader{B: wasmbin.Find(secs, wasmbin.SecMemory)}
	if mem.U32() != 1 {
		return nil, fmt.Errorf("sandbox: reactor must define exactly one memory")
	}
	minPages, _, _ := mem.Limits()
	if mem.Err != nil {
		return nil, fmt.Errorf("sandbox: reactor memory section: %w", mem.Err)
	}
	r.minMemory = uint64(minPages) * wasmPage
	for i, s := range r.segments {
		if uint64(s.offset)+uint64(len(s.init)) > r.minMemory {
			return nil, fmt.Errorf("sandbox: reactor data segment %d does not fit in the initial memory", i)
		}
	}
	r.module = wasmbin.Join(secs)
	return r, nil
}

func countImportedGlobals(body []byte) (uint32, error) {
	r := wasmbin.Reader{B: body}
	var globals uint32
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		r.Name()
		r.Name()
		switch kind := r.Byte(); kind {
		case wasmbin.KindFunc:
			r.U32()
		case wasmbin.KindTable:
			r.Byte()
			r.Limits()
		case wasmbin.KindMemory:
			r.Limits()
		case wasmbin.KindGlobal:
			r.Byte()
			r.Byte()
			globals++
		default:
			return 0, fmt.Errorf("sandbox: reactor: unknown import kind %#x", kind)
		}
	}
	if r.Err != nil {
		return 0, fmt.Errorf("sandbox: reactor import section: %w", r.Err)
	}
	return globals, nil
}

// mutableGlobals returns the indices of the defined mutable globals. An
// imported mutable global would be state outside the instance; the reactor
// has none, and one is refused.
func mutableGlobals(body []byte, imported uint32) ([]uint32, error) {
	r := wasmbin.Reader{B: body}
	var out []uint32
	for i, n := uint32(0), r.U32(); i < n && r.Err == nil; i++ {
		valType, mut := r.Byte(), r.Byte()
		if err := r.SkipConstExpr(r.Byte()); err != nil {
			return nil, fmt.Errorf("sandbox: reactor global %d: %w", imported+i, err)
		}
		if r.Byte() != 0x0b {
			return nil, fmt.Errorf("sandbox: reactor global %d: initialiser is not one constant", imported+i)
		}
		if mut == 1 {
			if valType != 0x7f && valType != 0x7e {
				return nil, fmt.Errorf("sandbox: reactor global %d: mutable global of type %#x cannot be saved", imported+i, valType)
			}
			out = append(out, imported+i)
		}
	}
	if r.Err != nil {
		return nil, fmt.Errorf("sandbox: reactor global section: %w", r.Err)
	}
	return out, nil
}

// passiveData returns the active segments of memory 0 and the data
// section without them: empty, or, with keepIndices, with every segment
// passive.
func passiveData(body []byte, keepIndices bool) ([]byte, []dataSegment, error) {
	r := wasmbin.Reader{B: body}
	n := r.U32()
	out := wasmbin.AppendU32(nil, n)
	var segs []dataSegment
	for i := uint32(0); i < n && r.Err == nil; i++ {
		flag := r.U32()
		switch flag {
		case 0, 2:
			if flag == 2 && r.U32() != 0 {
				return nil, nil, fmt.Errorf("sandbox: reactor data segment %d is for another memory", i)
			}
			if op := r.Byte(); op != 0x41 {
				return nil, nil, fmt.Errorf("sandbox: reactor data segment %d: offset is not an i32.const", i)
			}
			offset := r.S32()
			if r.Byte() != 0x0b {
				return nil, nil, fmt.Errorf("sandbox: reactor data segment %d: offset is not one constant", i)
			}
			init := r.Bytes(int(r.U32()))
			segs = append(segs, dataSegment{offset: uint32(offset), init: init})
			out = wasmbin.AppendU32(out, 1)
			out = wasmbin.AppendU32(out, uint32(len(init)))
			out = append(out, init...)
		case 1:
			init := r.Bytes(int(r.U32()))
			out = wasmbin.AppendU32(out, 1)
			out = wasmbin.AppendU32(out, uint32(len(init)))
			out = append(out, init...)
		default:
			return nil, nil, fmt.Errorf("sandbox: reactor data segment %d has unknown kind %d", i, flag)
		}
	}
	if r.Err != nil {
		return nil, nil, fmt.Errorf("sandbox: reactor data section: %w", r.Err)
	}
	if !keepIndices {
		// Without a data count section no instruction can name a segment.
		out = wasmbin.AppendU32(nil, 0)
	}
	return out, segs, nil
}

// exportGlobals appends an export for each global index to an export
// section and returns the names given.
func exportGlobals(body []byte, globals []uint32) ([]byte, []string, error) {
	r := wasmbin.Reader{B: body}
	n := r.U32()
	if r.Err != nil {
		return nil, nil, fmt.Errorf("sandbox: reactor export section: %w", r.Err)
	}
	out := wasmbin.AppendU32(nil, n+uint32(len(globals)))
	out = append(out, body[r.Pos:]...)
	names := make([]string, len(globals))
	for i, g := range globals {
		names[i] = fmt.Sprintf("%s%d", globalExportPrefix, g)
		out = wasmbin.AppendU32(out, uint32(len(names[i])))
		out = append(out, names[i]...)
		out = append(out, wasmbin.KindGlobal)
		out = wasmbin.AppendU32(out, g)
	}
	return out, names, nil
}
