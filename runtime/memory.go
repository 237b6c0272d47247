package runtime

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

const wasmPage = 64 << 10

// linearMemory backs one instance's linear memory with its own mapping:
// the whole cap is reserved once (no access, no commit) and grows in place
// with mprotect, so
//   - its address never changes, and the host may write the interrupt word
//     from another goroutine while the guest runs;
//   - each instance has its own cap (wazero's memory limit is per runtime);
//   - it is not on the Go heap, so guest memory does not drive Go's GC.
//
// A grow past the cap fails; CPython then raises MemoryError.
type linearMemory struct {
	reserved   []byte // the whole reservation
	size       uint64 // bytes accessible now
	peak       *atomic.Uint64
	beforeFree func() // stops every writer of the memory from outside the guest
}

func newLinearMemory(capBytes uint64, peak *atomic.Uint64) (*linearMemory, error) {
	capBytes = (capBytes + wasmPage - 1) / wasmPage * wasmPage
	b, err := syscall.Mmap(-1, 0, int(capBytes), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("runtime: reserve %d bytes of linear memory: %w", capBytes, err)
	}
	return &linearMemory{reserved: b, peak: peak}, nil
}

// Reallocate implements experimental.LinearMemory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.reserved)) {
		return nil
	}
	if size > m.size {
		if err := syscall.Mprotect(m.reserved[m.size:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			return nil
		}
		m.size = size
		if m.peak != nil {
			for {
				old := m.peak.Load()
				if size <= old || m.peak.CompareAndSwap(old, size) {
					break
				}
			}
		}
	}
	return m.reserved[:size:size]
}

// Free implements experimental.LinearMemory. wazero calls it when the
// module closes, also on its own (proc_exit), so the epoch thread and
// deadline timers are detached here, before the pages go away.
func (m *linearMemory) Free() {
	if m.beforeFree != nil {
		m.beforeFree()
	}
	if m.reserved != nil {
		syscall.Munmap(m.reserved)
		m.reserved = nil
	}
}

// withLinearMemory makes the next instantiation under ctx use a
// linearMemory capped at capBytes and records it in *out.
func withLinearMemory(ctx context.Context, capBytes uint64, out **linearMemory, peak *atomic.Uint64) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(
		func(_, max uint64) experimental.LinearMemory {
			c := capBytes
			if max < c {
				c = max
			}
			m, err := newLinearMemory(c, peak)
			if err != nil {
				return failedMemory{}
			}
			*out = m
			return m
		}))
}

// failedMemory is handed to wazero when the reservation itself failed; the
// instantiation then fails as out of memory.
type failedMemory struct{}

func (failedMemory) Reallocate(uint64) []byte { return nil }
func (failedMemory) Free()                    {}
