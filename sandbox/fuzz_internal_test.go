package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"testing"
)

// fuzzKey is the key the fuzzed snapshot files are opened for.
const fuzzKey = "fuzz-app"

// fuzzFileMax bounds the size of a fuzzed snapshot file: a header and up
// to 15 pages of linear memory.
const fuzzFileMax = 1 << 20

// allocBound is the most a decoder may allocate for a file of n bytes: a
// constant for buffers and headers, and a few times the file for what is
// decoded from it (slices grown by append). What a header claims never
// counts.
func allocBound(n int) uint64 { return 1<<20 + 4*uint64(n) }

// allocated is how many bytes f allocates (on every goroutine, so a bound
// checked with it has slack).
func allocated(f func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	f()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// seedSnapshots writes two real snapshot files with writeSnapshot, one
// without a base image and one with, on small memories that leave the
// image as holes (all-zero pages and pages of the base image), so that
// their bytes past the header are zeros; it returns each file's bytes.
func seedSnapshots(t testing.TB) [][]byte {
	dir := t.TempDir()
	plain, err := writeSnapshot(filepath.Join(dir, "plain"), fuzzKey, make([]byte, wasmPage), []uint64{1, 2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.close()
	baseMem := make([]byte, 2*wasmPage)
	for i := range baseMem {
		baseMem[i] = byte(i/os.Getpagesize() + 1)
	}
	base, err := writeSnapshot(filepath.Join(dir, "base"), basePrefix+"fuzz", baseMem, []uint64{7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer base.close()
	// The first page differs from the base's (it is zero), the others are
	// the base's: one run of them.
	mem := slices.Clone(baseMem)
	clear(mem[:os.Getpagesize()])
	onBase, err := writeSnapshot(filepath.Join(dir, "onbase"), fuzzKey, mem, []uint64{9, 8}, base)
	if err != nil {
		t.Fatal(err)
	}
	defer onBase.close()
	if len(onBase.baseRuns.runs) != 1 {
		t.Fatalf("base runs %v, want one", onBase.baseRuns.runs)
	}
	var files [][]byte
	for _, s := range []*Snapshot{plain, onBase} {
		// The seeds open, so that fuzzing starts from files that pass.
		opened, err := openSnapshot(s.path, fuzzKey)
		if err != nil {
			t.Fatal(err)
		}
		opened.close()
		b, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	return files
}

// hostileHeader is a snapshot header (its first snapshotFixed bytes, the
// rest of the file zeros) with the given counts.
func hostileHeader(memSize uint64, globals, keyLen, baseKeyLen, runs uint32) []byte {
	b := []byte(snapshotMagic)
	b = append(b, make([]byte, 32)...)
	b = binary.LittleEndian.AppendUint64(b, memSize)
	for _, n := range []uint32{globals, keyLen, baseKeyLen, uint32(os.Getpagesize()), runs, 0} {
		b = binary.LittleEndian.AppendUint32(b, n)
	}
	return append(b, make([]byte, 32)...)
}

// snapshotFile lays out the fuzzed file: head, then zeros up to size (at
// most fuzzFileMax); resealed, its checksum is made right, so that what
// follows the check is reached.
func snapshotFile(head []byte, size uint32, reseal bool) []byte {
	file := make([]byte, max(len(head), int(min(size, fuzzFileMax))))
	copy(file, head)
	if reseal && len(file) >= 40 {
		sum := sha256.Sum256(file[40:])
		copy(file[8:40], sum[:])
	}
	return file
}

// FuzzOpenSnapshot opens a fuzzed snapshot file. A damaged or hostile file
// is an ErrSnapshotInvalid, never a panic or an allocation its header asks
// for; a file opened has the right checksum, key and size, and base runs in
// order inside the image; peekBaseKey reads only bytes of the file.
func FuzzOpenSnapshot(f *testing.F) {
	for _, file := range seedSnapshots(f) {
		head := bytes.TrimRight(file, "\x00")
		f.Add(head, uint32(len(file)), false)
		f.Add(head, uint32(len(file)), true)
		f.Add(head[:len(head)/2], uint32(len(file)), true) // truncated header, zeros after
		f.Add(head, uint32(len(file)-1), true)             // memory not whole pages
	}
	for _, h := range [][]byte{
		hostileHeader(4<<30, 0, uint32(len(fuzzKey)), 0, 0),                       // a 4 GiB memory
		hostileHeader(wasmPage, 0, 0, 0, 1e9),                                     // a billion base runs
		hostileHeader(wasmPage, 1<<31, 1<<31, 1<<31, 1<<31),                       // lengths that overflow 32 bits
		hostileHeader(1<<64-wasmPage, 0, 0, 0, 0),                                 // a size that wraps past the header
		hostileHeader(wasmPage, 0, 0, snapshotDataOffset, 0),                      // a base key past the header
		hostileHeader(wasmPage, 0, 0, 4, 1),                                       // a run of no pages
		append(hostileHeader(wasmPage, 0, 0, 1, 1), 'b', 0, 0, 0, 0, 17, 0, 0, 0), // a run past the image
	} {
		f.Add(h, uint32(snapshotDataOffset+wasmPage), true)
		f.Add(h, uint32(len(h)), true) // the header alone: peekBaseKey must not read past it
	}
	path := filepath.Join(f.TempDir(), "snap")
	f.Fuzz(func(t *testing.T, head []byte, size uint32, reseal bool) {
		file := snapshotFile(head, size, reseal)
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		var s *Snapshot
		var err error
		var peeked string
		if n := allocated(func() { s, err = openSnapshot(path, fuzzKey); peeked = peekBaseKey(path) }); n > allocBound(len(file)) {
			t.Errorf("allocated %d bytes for a file of %d", n, len(file))
		}
		checkPeek(t, file, peeked)
		if err != nil {
			if !errors.Is(err, ErrSnapshotInvalid) {
				t.Fatalf("error %v, want an ErrSnapshotInvalid", err)
			}
			return
		}
		defer s.close()
		checkOpened(t, file, s)
		if peeked != s.baseKey {
			t.Errorf("peekBaseKey %q, the opened snapshot's %q", peeked, s.baseKey)
		}
	})
}

// checkOpened checks a snapshot that openSnapshot accepted from file.
func checkOpened(t *testing.T, file []byte, s *Snapshot) {
	t.Helper()
	if sum := sha256.Sum256(file[40:]); !bytes.Equal(sum[:], file[8:40]) || s.sum != sum {
		t.Fatalf("opened with checksum %x; the header says %x, the bytes are %x", s.sum, file[8:40], sum)
	}
	if s.key != fuzzKey || s.memSize != uint64(len(file))-snapshotDataOffset || s.memSize%wasmPage != 0 {
		t.Fatalf("key %q, memory %d, in a file of %d bytes", s.key, s.memSize, len(file))
	}
	runs := s.baseRuns
	if len(runs.runs) > 0 && (s.baseKey == "" || runs.pageSize != uint32(os.Getpagesize())) {
		t.Fatalf("base runs %v of %d-byte pages, base key %q", runs.runs, runs.pageSize, s.baseKey)
	}
	end := uint64(0)
	for _, r := range runs.runs {
		lo, hi := runs.span(r)
		if r.count == 0 || lo < end || hi > s.memSize || hi <= lo {
			t.Fatalf("base runs %v of %d-byte pages in %d bytes", runs.runs, runs.pageSize, s.memSize)
		}
		end = hi
	}
}

// checkPeek checks what peekBaseKey read from file: nothing, or the bytes
// the header places the base key at, all inside the file.
func checkPeek(t *testing.T, file []byte, peeked string) {
	t.Helper()
	if peeked == "" {
		return
	}
	le := binary.LittleEndian
	at := snapshotFixed + 8*uint64(le.Uint32(file[48:])) + uint64(le.Uint32(file[52:]))
	end := at + uint64(le.Uint32(file[56:]))
	if end > uint64(len(file)) || string(file[at:end]) != peeked {
		t.Fatalf("peekBaseKey %q: the header places it at [%d, %d) of a file of %d bytes", peeked, at, end, len(file))
	}
}

// fuzzSum is the checksum of the snapshot the fuzzed write sets are
// decoded for.
var fuzzSum = [32]byte{1, 2, 3}

// FuzzDecodeWriteSet decodes a fuzzed write-set file. A damaged or hostile
// file is an error, never a panic or an allocation its header asks for; a
// set decoded is exactly what the file holds (it encodes back to it), for
// the right snapshot, with runs in order inside the image.
func FuzzDecodeWriteSet(f *testing.F) {
	const memSize = 100 * 4096
	for _, w := range []*writeSet{
		{pageSize: 4096, runs: []pageRun{{0, 2}, {10, 1}, {90, 10}}},
		{pageSize: 4096},
		{pageSize: 1, runs: []pageRun{{0, 1<<32 - 1}}},
		{pageSize: 4096, runs: []pageRun{{0, 2}, {1, 1}}},
	} {
		f.Add(w.encode(fuzzSum), uint64(memSize), false)
	}
	billion := binary.LittleEndian.AppendUint32((&writeSet{pageSize: 4096}).encode(fuzzSum)[:44], 1e9)
	f.Add(append(billion, 0, 0, 0, 0), uint64(memSize), true)
	f.Add((&writeSet{pageSize: 0, runs: []pageRun{{0, 1}}}).encode(fuzzSum), uint64(memSize), false)
	f.Add((&writeSet{pageSize: 1, runs: []pageRun{{1<<32 - 2, 1}, {1<<32 - 1, 1}}}).encode(fuzzSum), uint64(1<<32), false)
	f.Fuzz(func(t *testing.T, b []byte, memSize uint64, reseal bool) {
		if reseal && len(b) >= 52 {
			b = slices.Clone(b)
			copy(b[8:40], fuzzSum[:])
			binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
		}
		var w *writeSet
		var err error
		if n := allocated(func() { w, err = decodeWriteSet(b, fuzzSum, memSize) }); n > allocBound(len(b)) {
			t.Errorf("allocated %d bytes for a file of %d", n, len(b))
		}
		if err != nil {
			return
		}
		if got := w.encode(fuzzSum); !bytes.Equal(got, b) {
			t.Fatalf("decoded %+v, which encodes to %x, not the file %x", w, got, b)
		}
		end := uint64(0)
		for _, r := range w.runs {
			lo, hi := uint64(r.first), uint64(r.first)+uint64(r.count)
			if lo < end || hi <= lo || hi*uint64(w.pageSize) > memSize {
				t.Fatalf("runs %v of %d-byte pages in %d bytes", w.runs, w.pageSize, memSize)
			}
			end = hi
		}
	})
}
