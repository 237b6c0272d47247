package sandbox

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"unsafe"
)

// MemoryUsage is what an instance's linear memory costs the machine, from
// the kernel's accounting (/proc/self/smaps) of its mapping. A snapshot's
// pages that an instance has only read are shared with every other
// instance restored from it; a page it wrote to is its own.
type MemoryUsage struct {
	// Size is the linear memory's length.
	Size uint64
	// RSS counts its resident pages, shared or not.
	RSS uint64
	// PSS is RSS with each shared page divided among its sharers.
	PSS uint64
	// Private counts the pages only this instance has written
	// (Private_Dirty): what one more instance costs. Pages of a snapshot it
	// has only read stay in the page cache, shared and reclaimable.
	Private uint64
}

// MemoryUsage reads the kernel's accounting of the instance's memory
// (Linux only). It costs a read of /proc/self/smaps, so it is meant for
// measurements, not for every request.
func (i *Instance) MemoryUsage() (MemoryUsage, error) {
	m := i.mem
	if m == nil || m.reserved == nil {
		return MemoryUsage{}, fmt.Errorf("sandbox: instance closed")
	}
	lo := uint64(uintptr(unsafe.Pointer(&m.reserved[0])))
	hi := lo + uint64(len(m.reserved))
	u, err := smapsRange(lo, hi)
	u.Size = m.size
	return u, err
}

// smapsRange sums the smaps entries of the mappings inside [lo, hi).
func smapsRange(lo, hi uint64) (MemoryUsage, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("sandbox: memory usage: %w", err)
	}
	defer f.Close()
	var u MemoryUsage
	inside := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if start, end, ok := mappingRange(line); ok {
			inside = start >= lo && end <= hi
			continue
		}
		if !inside {
			continue
		}
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *uint64
		switch string(name) {
		case "Rss":
			dst = &u.RSS
		case "Pss":
			dst = &u.PSS
		case "Private_Dirty":
			dst = &u.Private
		default:
			continue
		}
		kb, err := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
		if err == nil {
			*dst += kb << 10
		}
	}
	return u, sc.Err()
}

// mappingRange parses the "start-end perms ..." line that opens a mapping.
func mappingRange(line []byte) (start, end uint64, ok bool) {
	addr, _, found := bytes.Cut(line, []byte(" "))
	if !found {
		return 0, 0, false
	}
	a, b, found := bytes.Cut(addr, []byte("-"))
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(string(a), 16, 64)
	end, err2 := strconv.ParseUint(string(b), 16, 64)
	return start, end, err1 == nil && err2 == nil
}

// Resident is how much of an instance's linear memory is in RAM, from
// /proc/self/pagemap: pages only it holds, pages it shares with the page
// cache (a snapshot's pages it has not written to), and of those, in Base,
// the base image's, which every tenant shares (base.go).
type Resident struct {
	Private, Shared, Base uint64
}

// pagemap is /proc/self/pagemap, opened once; nil where there is none.
var pagemap = sync.OnceValue(func() *os.File {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	return f
})

// Bits of a /proc/self/pagemap entry.
const (
	pagePresent    = 1 << 63
	pageFileShared = 1 << 61 // a file page, or an anonymous page shared
)

// eachPage reads the page table entries of the first n bytes of the
// memory's accessible part, 8 bytes a page, and calls visit with each
// page's index and entry.
func (m *linearMemory) eachPage(n uint64, visit func(page, entry uint64)) error {
	f := pagemap()
	if f == nil {
		return errors.New("sandbox: no /proc/self/pagemap")
	}
	if m.reserved == nil {
		return errors.New("sandbox: memory freed")
	}
	size := uint64(os.Getpagesize())
	base := uint64(uintptr(unsafe.Pointer(&m.reserved[0])))
	pages := min(n, m.accessible) / size
	buf := make([]byte, 8*min(pages, 4096))
	for done := uint64(0); done < pages; {
		chunk := buf[:8*min(pages-done, uint64(len(buf)/8))]
		if _, err := f.ReadAt(chunk, int64((base/size+done)*8)); err != nil {
			return fmt.Errorf("sandbox: pagemap: %w", err)
		}
		for i := 0; i < len(chunk); i += 8 {
			visit(done+uint64(i/8), binary.LittleEndian.Uint64(chunk[i:]))
		}
		done += uint64(len(chunk) / 8)
	}
	return nil
}

// resident reads the page table entries of the accessible part of the
// memory: tens of microseconds for a Flask instance.
func (m *linearMemory) resident() (Resident, error) {
	if pagemap() == nil {
		return Resident{}, errors.New("sandbox: no /proc/self/pagemap")
	}
	if m.reserved == nil || m.accessible == 0 {
		return Resident{}, nil
	}
	size := uint64(os.Getpagesize())
	var r Resident
	runs := m.baseRuns.runs
	err := m.eachPage(m.accessible, func(page, e uint64) {
		for len(runs) > 0 && uint64(runs[0].first+runs[0].count) <= page {
			runs = runs[1:]
		}
		switch {
		case e&pagePresent == 0:
		case e&pageFileShared != 0 && len(runs) > 0 && uint64(runs[0].first) <= page:
			r.Base += size
		case e&pageFileShared != 0:
			r.Shared += size
		default:
			r.Private += size
		}
	})
	if err != nil {
		return Resident{}, err
	}
	return r, nil
}
