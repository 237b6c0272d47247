package sandbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
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
//
// The memory starts as an image (ABI.md "Snapshots"): either the module's
// initial data, copied in when the memory is first made accessible, or a
// snapshot file mapped privately over the start of the reservation, so that
// every instance restored from it shares the pages it has not written to
// (copy-on-write) and reads them from the page cache.
type linearMemory struct {
	reserved   []byte // the whole reservation
	accessible uint64 // bytes readable and writable now
	size       uint64 // the memory's length as wazero knows it
	peak       *atomic.Uint64
	beforeFree func()        // stops every writer of the memory from outside the guest
	prefetched chan struct{} // closed once the write set is copied in; nil if none
	baseRuns   pageRuns      // the pages mapped from a base image (base.go)
}

// awaitPrefetch waits until the write set, if any, is copied in. The guest
// must not run before: its own faults would contend with the copying.
func (m *linearMemory) awaitPrefetch() {
	if m.prefetched != nil {
		<-m.prefetched
	}
}

// memoryImage is what a new linear memory starts as: data or snap.
type memoryImage struct {
	data    *restorable // a fresh instance: the module's initial data
	snap    *Snapshot   // a restored instance
	mapping SnapshotMapping
}

// newLinearMemory reserves capBytes and makes the image accessible.
func newLinearMemory(capBytes uint64, peak *atomic.Uint64, img memoryImage) (*linearMemory, error) {
	capBytes = (capBytes + wasmPage - 1) / wasmPage * wasmPage
	var initial uint64
	switch {
	case img.snap != nil:
		initial = img.snap.memSize
	case img.data != nil:
		initial = img.data.minMemory
	}
	if initial > capBytes {
		return nil, fmt.Errorf("sandbox: the memory image (%d bytes) exceeds the memory limit (%d bytes)", initial, capBytes)
	}
	b, err := syscall.Mmap(-1, 0, int(capBytes), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("sandbox: reserve %d bytes of linear memory: %w", capBytes, err)
	}
	m := &linearMemory{reserved: b, peak: peak}
	if img.snap != nil {
		release, err := img.snap.hold()
		if err != nil {
			syscall.Munmap(b)
			return nil, err
		}
		defer release()
	}
	if img.snap != nil && initial > 0 && img.mapping != CopyImage {
		// Replaces the start of the reservation in place.
		flags, prot := syscall.MAP_PRIVATE|syscall.MAP_FIXED, syscall.PROT_READ|syscall.PROT_WRITE
		if img.mapping == MapPrivatePopulate {
			// Populated read-only, every page table entry points into the
			// page cache (populating a writable private mapping would copy
			// every page); writable afterwards, writes still copy on write.
			flags, prot = flags|syscall.MAP_POPULATE, syscall.PROT_READ
		}
		_, err := unix.MmapPtr(int(img.snap.file.Fd()), snapshotDataOffset, unsafe.Pointer(&b[0]),
			uintptr(initial), prot, flags)
		if err == nil {
			err = mapBase(b, img.snap, flags, prot)
		}
		if err == nil && prot != syscall.PROT_READ|syscall.PROT_WRITE {
			err = syscall.Mprotect(b[:initial], syscall.PROT_READ|syscall.PROT_WRITE)
		}
		if err != nil {
			syscall.Munmap(b)
			return nil, fmt.Errorf("sandbox: map snapshot: %w", err)
		}
		m.accessible, m.baseRuns = initial, img.snap.baseRuns
		if w := img.snap.writes.Load(); w != nil && img.mapping == MapPrivate {
			// Copied on another thread while wazero instantiates the module,
			// which does not touch the memory.
			m.prefetched = make(chan struct{})
			go func() {
				defer close(m.prefetched)
				w.prefetch(b[:initial])
			}()
		}
	} else if !m.grant(initial) {
		syscall.Munmap(b)
		return nil, fmt.Errorf("sandbox: make %d bytes of linear memory accessible", initial)
	}
	switch {
	case img.snap != nil && img.mapping == CopyImage:
		_, err := img.snap.file.ReadAt(b[:initial], snapshotDataOffset)
		for _, r := range img.snap.baseRuns.runs {
			if err != nil {
				break
			}
			lo, hi := img.snap.baseRuns.span(r)
			_, err = img.snap.base.file.ReadAt(b[lo:hi], snapshotDataOffset+int64(lo))
		}
		if err != nil {
			syscall.Munmap(b)
			return nil, fmt.Errorf("sandbox: read snapshot: %w", err)
		}
	case img.snap == nil && img.data != nil:
		img.data.applyTo(b[:initial])
	}
	return m, nil
}

// mapBase maps the base image's pages of snap's base runs over b, which
// holds a mapping of snap, with the same flags and protection.
func mapBase(b []byte, snap *Snapshot, flags, prot int) error {
	for _, r := range snap.baseRuns.runs {
		lo, hi := snap.baseRuns.span(r)
		if _, err := unix.MmapPtr(int(snap.base.file.Fd()), snapshotDataOffset+int64(lo), unsafe.Pointer(&b[lo]),
			uintptr(hi-lo), prot, flags); err != nil {
			return fmt.Errorf("base image: %w", err)
		}
	}
	return nil
}

// grant makes the first size bytes readable and writable.
func (m *linearMemory) grant(size uint64) bool {
	if size <= m.accessible {
		return true
	}
	if err := syscall.Mprotect(m.reserved[m.accessible:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
		return false
	}
	m.accessible = size
	return true
}

// Reallocate implements experimental.LinearMemory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.reserved)) || !m.grant(size) {
		return nil
	}
	if size > m.size {
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
	return m.reserved[:m.size:m.size]
}

// Free implements experimental.LinearMemory. wazero calls it when the
// module closes, also on its own (proc_exit), so the epoch thread and
// deadline timers are detached here, before the pages go away.
func (m *linearMemory) Free() {
	m.awaitPrefetch()
	if m.beforeFree != nil {
		m.beforeFree()
	}
	if m.reserved != nil {
		syscall.Munmap(m.reserved)
		m.reserved = nil
	}
}

// withLinearMemory makes the next instantiation under ctx use m. The
// memory is made before, so that a failure to reserve or map it is an error
// rather than a failed allocation inside wazero.
func withLinearMemory(ctx context.Context, m *linearMemory) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(
		func(_, _ uint64) experimental.LinearMemory { return m }))
}
