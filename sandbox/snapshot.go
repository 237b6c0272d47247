package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// A snapshot file is one instance's state right after its app was imported
// (ABI.md "Snapshots"), or, for a base image, right after the interpreter
// started (base.go):
//
//	offset 0      magic "WWSNAP" 0x00 0x02
//	offset 8      SHA-256 of every byte from offset 40 to the end
//	offset 40     u64 memory size, u32 number of globals, u32 key length
//	offset 56     u32 base key length (0: no base), u32 page size of the
//	              base runs, u32 number of base runs, u32 zero
//	offset 72     the base image's checksum (its bytes 8 to 40), or zeros
//	offset 104    the globals, u64 each, the key, the base key, then the
//	              base runs, each u32 first page and u32 number of pages
//	offset 64 KiB the linear memory, memory size bytes
//
// The pages of the base runs are equal to the base image's at the same
// offsets; the file leaves them as holes (zeros, counted as such by the
// checksum) and a restore maps them from the base image, which every
// tenant's instances share. The memory starts at a 64 KiB offset so that it
// can be mapped straight from the file on any page size. Numbers are
// little-endian.
const (
	snapshotMagic      = "WWSNAP\x00\x02"
	snapshotDataOffset = 64 << 10
	snapshotFixed      = 104
)

// ErrSnapshotInvalid is returned for a snapshot file that is truncated,
// corrupted or made for something else; such a file is never restored.
var ErrSnapshotInvalid = errors.New("sandbox: invalid snapshot")

// Snapshot is a verified snapshot file, open for restoring; its
// SnapshotStore closes it. Instances restored from it map the file
// privately, so they share its unchanged pages; they keep working after the
// file is closed. A restore holds the file (hold) while it maps or reads
// it, so that a close (a reload retiring the snapshot, a newer save of the
// same key) waits for it: a closed file's descriptor number may already
// name another file.
type Snapshot struct {
	fileMu  sync.RWMutex
	closed  bool // under fileMu
	file    *os.File
	path    string
	key     string
	sum     [32]byte // the header's checksum
	memSize uint64
	globals []uint64
	writes  atomic.Pointer[writeSet] // nil until recorded (writeset.go)
	recMu   sync.Mutex
	rec     *recording // the instance recording writes, if any (coldgate.go)

	// The base image whose pages the runs are, once opened (base.go).
	base     *Snapshot
	baseKey  string
	baseSum  [32]byte
	baseRuns pageRuns
}

// Path is the snapshot's file.
func (s *Snapshot) Path() string { return s.path }

// HasWriteSet reports whether the snapshot's write set is recorded
// (writeset.go).
func (s *Snapshot) HasWriteSet() bool { return s.writes.Load() != nil }

// MemorySize is the size of the linear memory the snapshot holds.
func (s *Snapshot) MemorySize() uint64 { return s.memSize }

// SharedBytes is how much of the image comes from its base image, shared
// with every other tenant's (0 without a base).
func (s *Snapshot) SharedBytes() uint64 { return s.baseRuns.bytes() }

func (s *Snapshot) close() {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if !s.closed {
		s.closed = true
		s.file.Close()
	}
}

// ErrSnapshotClosed is returned by a restore from a snapshot whose store
// closed it meanwhile; the store may hold a newer one for the same key.
var ErrSnapshotClosed = errors.New("sandbox: snapshot closed")

// hold keeps the file (and its base image's) open until release.
func (s *Snapshot) hold() (release func(), err error) {
	s.fileMu.RLock()
	if s.closed {
		s.fileMu.RUnlock()
		return nil, ErrSnapshotClosed
	}
	if s.base == nil {
		return s.fileMu.RUnlock, nil
	}
	releaseBase, err := s.base.hold()
	if err != nil {
		s.fileMu.RUnlock()
		return nil, err
	}
	return func() { releaseBase(); s.fileMu.RUnlock() }, nil
}

// writeSnapshot writes a snapshot file atomically (to a temporary file in
// the same folder, synced, then renamed over path) and returns it open. It
// is not read back: its checksum was computed from what was written. With a
// base image, the pages equal to the base's are left out (see base.go).
func writeSnapshot(path, key string, mem []byte, globals []uint64, base *Snapshot) (*Snapshot, error) {
	snap := &Snapshot{path: path, key: key, memSize: uint64(len(mem)), globals: globals}
	if base != nil {
		runs, err := base.equalRuns(mem)
		if err != nil {
			return nil, fmt.Errorf("sandbox: write snapshot: %w", err)
		}
		snap.base, snap.baseKey, snap.baseSum, snap.baseRuns = base, base.key, base.sum, runs
	}
	fixed := snap.appendHeader(nil)
	if 40+len(fixed) > snapshotDataOffset {
		return nil, fmt.Errorf("sandbox: snapshot header too long")
	}
	pad := make([]byte, snapshotDataOffset-40-len(fixed))
	sum := sha256.New()
	sum.Write(fixed)
	sum.Write(pad)

	err := replaceFile(path, func(f *os.File) error {
		if err := writeImage(f, sum, mem, snap.baseRuns); err != nil {
			return err
		}
		sum.Sum(snap.sum[:0])
		head := slices.Concat([]byte(snapshotMagic), snap.sum[:], fixed, pad)
		_, err := f.WriteAt(head, 0)
		return err
	})
	if err == nil {
		// The write set of the snapshot replaced is not this one's (a
		// reader would reject it by its checksum, and remove it, anyway).
		os.Remove(writeSetPath(path))
		snap.file, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: write snapshot: %w", err)
	}
	return snap, nil
}

// appendHeader appends the header from offset 40 on, without padding.
func (s *Snapshot) appendHeader(b []byte) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, s.memSize)
	b = le.AppendUint32(b, uint32(len(s.globals)))
	b = le.AppendUint32(b, uint32(len(s.key)))
	b = le.AppendUint32(b, uint32(len(s.baseKey)))
	b = le.AppendUint32(b, s.baseRuns.pageSize)
	b = le.AppendUint32(b, uint32(len(s.baseRuns.runs)))
	b = le.AppendUint32(b, 0)
	b = append(b, s.baseSum[:]...)
	for _, g := range s.globals {
		b = le.AppendUint64(b, g)
	}
	b = append(b, s.key...)
	b = append(b, s.baseKey...)
	for _, r := range s.baseRuns.runs {
		b = le.AppendUint32(b, r.first)
		b = le.AppendUint32(b, r.count)
	}
	return b
}

// replaceFile writes a file atomically: write fills a temporary file in the
// same folder, which is synced, then renamed over path. Readers see the old
// file or the whole new one; a crash leaves at most a "*.tmp-*" file, which
// SnapshotStore.Retain removes later.
func replaceFile(path string, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

// writeImage writes mem at snapshotDataOffset and adds the bytes the file
// then holds to sum. It leaves holes for the pages of runs (they come from
// the base image) and for the pages that are all zero (most of the C stack
// and the free heap): they take no disk and read back as zeros.
func writeImage(f *os.File, sum hash.Hash, mem []byte, runs pageRuns) error {
	page := os.Getpagesize()
	zero := make([]byte, page)
	next := runs.runs
	from := -1 // the first page of the bytes not yet written, or -1
	flush := func(to int) error {
		if from < 0 {
			return nil
		}
		_, err := f.WriteAt(mem[from:to], snapshotDataOffset+int64(from))
		from = -1
		return err
	}
	for off := 0; off < len(mem); off += page {
		p := mem[off:min(off+page, len(mem))]
		i := uint32(off / page)
		for len(next) > 0 && next[0].first+next[0].count <= i {
			next = next[1:]
		}
		inBase := len(next) > 0 && next[0].first <= i
		if inBase {
			sum.Write(zero[:len(p)])
		} else {
			sum.Write(p)
		}
		if inBase || bytes.Equal(p, zero[:len(p)]) {
			if err := flush(off); err != nil {
				return err
			}
			continue
		}
		if from < 0 {
			from = off
		}
	}
	if err := flush(len(mem)); err != nil {
		return err
	}
	return f.Truncate(snapshotDataOffset + int64(len(mem)))
}

// openSnapshot opens and verifies a snapshot file made for key, and reads
// its write set if it has one. The whole file is read once to check its
// checksum (which also brings it into the page cache that restored
// instances map).
func openSnapshot(path, key string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	s, err := verifySnapshot(f, key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrSnapshotInvalid, path, err)
	}
	s.path = path
	s.loadWriteSet()
	return s, nil
}

// peekBaseKey reads the base key from a snapshot file's header, without
// verifying anything: "" when there is none or the file cannot be read.
func peekBaseKey(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, snapshotDataOffset)
	n, _ := io.ReadFull(f, head)
	if n < snapshotFixed || string(head[:8]) != snapshotMagic {
		return ""
	}
	le := binary.LittleEndian
	at := snapshotFixed + 8*uint64(le.Uint32(head[48:])) + uint64(le.Uint32(head[52:]))
	end := at + uint64(le.Uint32(head[56:]))
	if end > uint64(n) { // past the header, or past the end of a short file
		return ""
	}
	return string(head[at:end])
}

func verifySnapshot(f *os.File, key string) (*Snapshot, error) {
	var head [snapshotFixed]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return nil, errors.New("shorter than its header")
	}
	if string(head[:8]) != snapshotMagic {
		return nil, errors.New("not a snapshot of this version")
	}
	le := binary.LittleEndian
	memSize := le.Uint64(head[40:])
	nGlobals, keyLen := le.Uint32(head[48:]), le.Uint32(head[52:])
	baseKeyLen, pageSize, nRuns := le.Uint32(head[56:]), le.Uint32(head[60:]), le.Uint32(head[64:])
	varLen := uint64(nGlobals)*8 + uint64(keyLen) + uint64(baseKeyLen) + uint64(nRuns)*8
	if snapshotFixed+varLen > snapshotDataOffset || memSize%wasmPage != 0 || le.Uint32(head[68:]) != 0 {
		return nil, errors.New("malformed header")
	}
	if baseKeyLen > 0 && pageSize != uint32(os.Getpagesize()) {
		return nil, fmt.Errorf("made on %d-byte pages", pageSize)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if uint64(st.Size()) != snapshotDataOffset+memSize {
		return nil, fmt.Errorf("%d bytes, the header says %d", st.Size(), snapshotDataOffset+memSize)
	}
	sum := sha256.New()
	sum.Write(head[40:])
	rest := io.TeeReader(f, sum)
	vars := make([]byte, varLen)
	if _, err := io.ReadFull(rest, vars); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, rest); err != nil {
		return nil, err
	}
	if !bytes.Equal(sum.Sum(nil), head[8:40]) {
		return nil, errors.New("checksum mismatch")
	}
	s := &Snapshot{file: f, sum: [32]byte(head[8:40]), memSize: memSize, globals: make([]uint64, nGlobals),
		baseSum: [32]byte(head[72:104]), baseRuns: pageRuns{pageSize: pageSize}}
	for i := range s.globals {
		s.globals[i] = le.Uint64(vars[i*8:])
	}
	vars = vars[nGlobals*8:]
	if got := string(vars[:keyLen]); got != key {
		// Keys are short; a long one is quoted only in part.
		return nil, fmt.Errorf("made for %.64q, not %q", got, key)
	}
	s.key, s.baseKey = key, string(vars[keyLen:keyLen+baseKeyLen])
	vars = vars[keyLen+baseKeyLen:]
	next := uint64(0)
	for i := uint32(0); i < nRuns; i++ {
		r := pageRun{le.Uint32(vars[8*i:]), le.Uint32(vars[8*i+4:])}
		if baseKeyLen == 0 || r.count == 0 || uint64(r.first) < next || (uint64(r.first)+uint64(r.count))*uint64(pageSize) > memSize {
			return nil, errors.New("base runs out of order or out of the image")
		}
		next = uint64(r.first) + uint64(r.count)
		s.baseRuns.runs = append(s.baseRuns.runs, r)
	}
	return s, nil
}

// SnapshotKey names what a snapshot of cfg depends on: the interpreter
// module's content, everything in cfg that the guest sees while it starts,
// and the app folder (its path; names, sizes and modification times of
// every file; the .pyc cache, itself keyed by the sources' content; the
// fixed mounts, /dev and the CA placeholder, whose order sets the
// descriptors the image holds). Any change
// gives another key, so a stale snapshot is never found.
func (e *Engine) SnapshotKey(ctx context.Context, cfg AppConfig) (string, error) {
	if _, _, err := e.reactor(ctx); err != nil {
		return "", err
	}
	h := sha256.New()
	// The folder's path keeps two tenants with files alike in name, size
	// and time (but not content) from ever sharing a snapshot.
	fmt.Fprintf(h, "reactor %x\napp %q\ndir %q\nvalidate %t\ndata %t\npyc %q\nzoneinfo %t\nlimit %d\ndev null\ncacerts %s\n",
		e.reactorSum, cfg.App, cfg.Dir, cfg.Validate, cfg.DataDir != "", cfg.PycacheDir, e.zoneinfo != "", cfg.MemoryLimit, GuestCACertsDir)
	for _, p := range cfg.PythonPath {
		fmt.Fprintf(h, "path %q\n", p)
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Env)) {
		fmt.Fprintf(h, "env %q=%q\n", k, cfg.Env[k])
	}
	if cfg.Dir != "" {
		err := tenantfs.Walk(cfg.Dir, func(e tenantfs.Entry) error {
			fmt.Fprintf(h, "file %q %v %d %d\n", e.Rel, e.Info.Mode(), e.Info.Size(), e.Info.ModTime().UnixNano())
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("sandbox: snapshot key: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// saveSnapshot readies a fresh instance (wsgi_before_snapshot) and writes
// its state to path for key, returning the snapshot open. It must be called
// before the instance serves any request; the instance stays usable.
func (i *Instance) saveSnapshot(ctx context.Context, path, key string) (*Snapshot, error) {
	if i.restored || i.served.Load() > 0 {
		return nil, errors.New("sandbox: only a fresh instance that has served nothing can be saved")
	}
	// wsgi_before_snapshot runs the app's finalizers and gc callbacks: it is
	// stopped at ctx's deadline like a request.
	ctx = i.callContext(ctx)
	release := i.interrupt.watch(ctx)
	res, err := i.mod.ExportedFunction(hostabi.ExportBeforeSnapshot).Call(ctx)
	release()
	if err != nil {
		i.close()
		return nil, fmt.Errorf("sandbox: wsgi_before_snapshot: %w", describeCallError(err))
	}
	if code := int32(res[0]); code != 0 {
		return nil, fmt.Errorf("sandbox: the app cannot be snapshotted (wsgi_before_snapshot result %d; see the tenant's log)", code)
	}
	if n := i.conns.Open(); n > 0 {
		// A restored instance would hold handles to connections it has not
		// got (README.md "Outbound connections").
		return nil, fmt.Errorf("sandbox: the app cannot be snapshotted: it holds %d open outbound connection(s) after its import; instances start fresh", n)
	}
	if n := i.locks.Holding(); n > 0 {
		// A restored instance would believe it holds locks it has not got.
		return nil, fmt.Errorf("sandbox: the app cannot be snapshotted: it has %d locked file(s) open after its import; instances start fresh", n)
	}
	globals := make([]uint64, len(i.globalNames))
	for n, name := range i.globalNames {
		globals[n] = i.mod.ExportedGlobal(name).Get()
	}
	mem, ok := i.mod.Memory().Read(0, i.mod.Memory().Size())
	if !ok {
		return nil, errors.New("sandbox: read linear memory")
	}
	return writeSnapshot(path, key, mem, globals, i.base)
}

// restoreGlobals sets the mutable globals of a restored instance.
func restoreGlobals(mod api.Module, names []string, values []uint64) error {
	if len(names) != len(values) {
		return fmt.Errorf("%w: %d globals, the module has %d", ErrSnapshotInvalid, len(values), len(names))
	}
	for n, name := range names {
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("sandbox: global %s is not mutable", name)
		}
		g.Set(values[n])
	}
	return nil
}
