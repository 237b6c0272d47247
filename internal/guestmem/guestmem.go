// Package guestmem reads and writes guest linear memory with bounds checks.
// A range outside memory panics with a *TrapError, which wazero turns into a
// failed guest call: the instance traps, the host never crashes.
//
// Slices returned here alias guest memory: use them before the host function
// returns and never keep them, since memory.grow may move the memory.
package guestmem

import (
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// TrapError is the panic value of an out-of-bounds access.
type TrapError struct {
	Offset, Length uint32
	Size           uint32
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("guestmem: range [%d, %d+%d) outside linear memory of %d bytes",
		e.Offset, e.Offset, e.Length, e.Size)
}

// Read returns the guest bytes [offset, offset+length), for the host to read
// or to fill.
func Read(mem api.Memory, offset, length uint32) []byte {
	b, ok := mem.Read(offset, length)
	if !ok {
		panic(&TrapError{Offset: offset, Length: length, Size: mem.Size()})
	}
	return b
}

// Write copies data to the guest at offset.
func Write(mem api.Memory, offset uint32, data []byte) {
	if !mem.Write(offset, data) {
		panic(&TrapError{Offset: offset, Length: uint32(len(data)), Size: mem.Size()})
	}
}
