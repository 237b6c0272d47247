package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A snapshot's write set is the pages of its image that a restored
// instance's first request writes to, recorded once (from
// /proc/self/pagemap) and copied in before the guest runs at later restores
// (README.md, "Design notes", says why). It is only a hint: a wrong or
// stale set is never an error, and a file that fails its checks is ignored.
//
// Its file, <snapshot>.writes:
//
//	offset 0   magic "WWWRIT" 0x00 0x01
//	offset 8   the SHA-256 of the snapshot it belongs to (its header's)
//	offset 40  u32 page size, u32 number of runs
//	offset 48  the runs, each u32 first page and u32 number of pages
//	then       u32 CRC-32 (IEEE) of every byte before it
const (
	writeSetMagic = "WWWRIT\x00\x01"
	writeSetExt   = ".writes"
	// writeSetHole is the largest gap between two written runs that is
	// copied too, to save a system call per run.
	writeSetHole = 1
)

// pageRun is pages [first, first+count) of a linear memory, in OS pages.
type pageRun struct{ first, count uint32 }

type writeSet struct {
	pageSize uint32
	runs     []pageRun
}

// pages is how many pages the set copies.
func (w *writeSet) pages() int {
	n := 0
	for _, r := range w.runs {
		n += int(r.count)
	}
	return n
}

// populateWriteWorks is cleared when the kernel lacks
// MADV_POPULATE_WRITE (before Linux 5.14): write sets are then not used.
var populateWriteWorks atomic.Bool

func init() { populateWriteWorks.Store(true) }

// prefetch copies the set's pages of mem (a private mapping of the
// snapshot) into memory of its own.
func (w *writeSet) prefetch(mem []byte) {
	if !populateWriteWorks.Load() || w.pageSize != uint32(os.Getpagesize()) {
		return
	}
	size := uint64(w.pageSize)
	for _, r := range w.runs {
		lo, hi := uint64(r.first)*size, uint64(r.first+r.count)*size
		if hi > uint64(len(mem)) {
			return
		}
		if err := unix.Madvise(mem[lo:hi], unix.MADV_POPULATE_WRITE); errors.Is(err, unix.EINVAL) {
			populateWriteWorks.Store(false)
			return
		}
	}
}

// privateRuns reads which pages of the first limit bytes of the memory are
// the instance's own (written since it was mapped), as runs.
func (m *linearMemory) privateRuns(limit uint64) (*writeSet, error) {
	w := &writeSet{pageSize: uint32(os.Getpagesize())}
	err := m.eachPage(limit, func(page, e uint64) {
		if e&pagePresent == 0 || e&pageFileShared != 0 { // absent, or still the file's
			return
		}
		i := uint32(page)
		if k := len(w.runs) - 1; k >= 0 && w.runs[k].first+w.runs[k].count+writeSetHole >= i {
			w.runs[k].count = i + 1 - w.runs[k].first
			return
		}
		w.runs = append(w.runs, pageRun{first: i, count: 1})
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func writeSetPath(snapshotPath string) string { return snapshotPath + writeSetExt }

// encode lays the set out as its file, for the snapshot whose checksum is sum.
func (w *writeSet) encode(sum [32]byte) []byte {
	b := make([]byte, 0, 52+8*len(w.runs))
	b = append(b, writeSetMagic...)
	b = append(b, sum[:]...)
	b = binary.LittleEndian.AppendUint32(b, w.pageSize)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(w.runs)))
	for _, r := range w.runs {
		b = binary.LittleEndian.AppendUint32(b, r.first)
		b = binary.LittleEndian.AppendUint32(b, r.count)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// decodeWriteSet checks a write-set file against the snapshot it is meant
// for (its checksum and memory size).
func decodeWriteSet(b []byte, sum [32]byte, memSize uint64) (*writeSet, error) {
	if len(b) < 52 || string(b[:8]) != writeSetMagic {
		return nil, errors.New("not a write set")
	}
	body, tail := b[:len(b)-4], b[len(b)-4:]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(tail) {
		return nil, errors.New("checksum mismatch")
	}
	if !bytes.Equal(body[8:40], sum[:]) {
		return nil, errors.New("made for another snapshot")
	}
	w := &writeSet{pageSize: binary.LittleEndian.Uint32(body[40:])}
	n := binary.LittleEndian.Uint32(body[44:])
	if w.pageSize == 0 || uint64(len(body)) != 48+8*uint64(n) {
		return nil, errors.New("malformed")
	}
	pages := memSize / uint64(w.pageSize)
	next := uint64(0)
	for i := uint32(0); i < n; i++ {
		r := pageRun{binary.LittleEndian.Uint32(body[48+8*i:]), binary.LittleEndian.Uint32(body[52+8*i:])}
		if r.count == 0 || uint64(r.first) < next || uint64(r.first)+uint64(r.count) > pages {
			return nil, errors.New("runs out of order or out of the image")
		}
		next = uint64(r.first) + uint64(r.count)
		w.runs = append(w.runs, r)
	}
	return w, nil
}

// loadWriteSet reads the snapshot's write set, if it has a valid one; an
// invalid file is removed.
func (s *Snapshot) loadWriteSet() {
	path := writeSetPath(s.path)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	w, err := decodeWriteSet(b, s.sum, s.memSize)
	if err != nil {
		os.Remove(path)
		return
	}
	s.writes.Store(w)
}

// recordWriteSet keeps w as the snapshot's write set, unless it has one,
// and writes its file (atomically, see replaceFile).
func (s *Snapshot) recordWriteSet(w *writeSet) error {
	if !s.writes.CompareAndSwap(nil, w) {
		return nil
	}
	err := replaceFile(writeSetPath(s.path), func(f *os.File) error {
		_, err := f.Write(w.encode(s.sum))
		return err
	})
	if err != nil {
		return fmt.Errorf("sandbox: write set: %w", err)
	}
	return nil
}

// RecordWriteSet records, after the instance's first request, the pages it
// wrote as its snapshot's write set, if it was restored without one; later
// restores then copy those pages in at once (see writeset.go). Pools call
// it; it must not run while the instance serves.
//
// Restores of the snapshot waiting for the set (coldgate.go) go on once it
// returns, recorded or not.
func (i *Instance) RecordWriteSet() error {
	snap := i.recordsFor
	if snap == nil || i.served.Load() == 0 {
		return nil
	}
	i.recordsFor = nil
	if i.recording != nil {
		defer i.recording.finish()
	}
	if i.served.Load() != 1 || snap.writes.Load() != nil {
		return nil
	}
	w, err := i.mem.privateRuns(snap.memSize)
	if err != nil || len(w.runs) == 0 {
		return err
	}
	return snap.recordWriteSet(w)
}

// WriteSetPages is how many pages a restore from the snapshot copies in at
// once: its write set's, 0 until one is recorded.
func (s *Snapshot) WriteSetPages() int {
	if w := s.writes.Load(); w != nil {
		return w.pages()
	}
	return 0
}
