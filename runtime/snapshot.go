package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// A snapshot file is one instance's state right after its app was imported
// (ABI.md "Snapshots"):
//
//	offset 0      magic "WWSNAP" 0x00 0x01
//	offset 8      SHA-256 of every byte from offset 40 to the end
//	offset 40     u64 memory size, u32 number of globals, u32 key length
//	offset 56     the globals, u64 each, then the key
//	offset 64 KiB the linear memory, memory size bytes
//
// The memory starts at a 64 KiB offset so that it can be mapped straight
// from the file on any page size. Numbers are little-endian.
const (
	snapshotMagic      = "WWSNAP\x00\x01"
	snapshotDataOffset = 64 << 10
	snapshotFixed      = 56
)

// ErrSnapshotInvalid is returned for a snapshot file that is truncated,
// corrupted or made for something else; such a file is never restored.
var ErrSnapshotInvalid = errors.New("runtime: invalid snapshot")

// Snapshot is a verified snapshot file, open for restoring; its
// SnapshotStore closes it. Instances restored from it map the file
// privately, so they share its unchanged pages; they keep working after the
// file is closed.
type Snapshot struct {
	file    *os.File
	path    string
	key     string
	sum     [32]byte // the header's checksum
	memSize uint64
	globals []uint64
	writes  atomic.Pointer[writeSet] // nil until recorded (writeset.go)
}

// Path is the snapshot's file.
func (s *Snapshot) Path() string { return s.path }

// MemorySize is the size of the linear memory the snapshot holds.
func (s *Snapshot) MemorySize() uint64 { return s.memSize }

func (s *Snapshot) close() { s.file.Close() }

// writeSnapshot writes a snapshot file atomically (to a temporary file in
// the same folder, synced, then renamed over path) and returns it open. It
// is not read back: its checksum was computed from what was written.
func writeSnapshot(path, key string, mem []byte, globals []uint64) (*Snapshot, error) {
	fixed := make([]byte, snapshotFixed-40, snapshotFixed-40+8*len(globals)+len(key))
	binary.LittleEndian.PutUint64(fixed[0:], uint64(len(mem)))
	binary.LittleEndian.PutUint32(fixed[8:], uint32(len(globals)))
	binary.LittleEndian.PutUint32(fixed[12:], uint32(len(key)))
	for _, g := range globals {
		fixed = binary.LittleEndian.AppendUint64(fixed, g)
	}
	fixed = append(fixed, key...)
	if 40+len(fixed) > snapshotDataOffset {
		return nil, fmt.Errorf("runtime: snapshot header too long")
	}
	pad := make([]byte, snapshotDataOffset-40-len(fixed))
	sum := sha256.New()
	sum.Write(fixed)
	sum.Write(pad)
	sum.Write(mem)

	snap := &Snapshot{path: path, key: key, memSize: uint64(len(mem)), globals: globals}
	sum.Sum(snap.sum[:0])

	err := replaceFile(path, func(f *os.File) error {
		for _, part := range [][]byte{[]byte(snapshotMagic), snap.sum[:], fixed, pad} {
			if _, err := f.Write(part); err != nil {
				return err
			}
		}
		return writeSparse(f, mem)
	})
	if err == nil {
		// The write set of the snapshot replaced is not this one's (a
		// reader would reject it by its checksum, and remove it, anyway).
		os.Remove(writeSetPath(path))
		snap.file, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("runtime: write snapshot: %w", err)
	}
	return snap, nil
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

// writeSparse writes mem at the file's offset, leaving holes for the
// 64 KiB pages that are all zero (most of the C stack and the free heap):
// they take no disk and read back as zeros.
func writeSparse(f *os.File, mem []byte) error {
	var zero [wasmPage]byte
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	for off := 0; off < len(mem); off += wasmPage {
		page := mem[off:min(off+wasmPage, len(mem))]
		if bytes.Equal(page, zero[:len(page)]) {
			continue
		}
		if _, err := f.WriteAt(page, start+int64(off)); err != nil {
			return err
		}
	}
	return f.Truncate(start + int64(len(mem)))
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

func verifySnapshot(f *os.File, key string) (*Snapshot, error) {
	var head [snapshotFixed]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return nil, errors.New("shorter than its header")
	}
	if string(head[:8]) != snapshotMagic {
		return nil, errors.New("not a snapshot of this version")
	}
	memSize := binary.LittleEndian.Uint64(head[40:])
	nGlobals := binary.LittleEndian.Uint32(head[48:])
	keyLen := binary.LittleEndian.Uint32(head[52:])
	varLen := uint64(nGlobals)*8 + uint64(keyLen)
	if snapshotFixed+varLen > snapshotDataOffset || memSize%wasmPage != 0 {
		return nil, errors.New("malformed header")
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
	if got := string(vars[nGlobals*8:]); got != key {
		return nil, fmt.Errorf("made for %q, not %q", got, key)
	}
	s := &Snapshot{file: f, key: key, sum: [32]byte(head[8:40]), memSize: memSize, globals: make([]uint64, nGlobals)}
	for i := range s.globals {
		s.globals[i] = binary.LittleEndian.Uint64(vars[i*8:])
	}
	return s, nil
}

// SnapshotKey names what a snapshot of cfg depends on: the interpreter
// module's content, everything in cfg that the guest sees while it starts,
// and the app folder (its path; names, sizes and modification times of
// every file; the .pyc cache, itself keyed by the sources' content). Any change
// gives another key, so a stale snapshot is never found.
func (e *Engine) SnapshotKey(ctx context.Context, cfg AppConfig) (string, error) {
	if _, _, err := e.reactor(ctx); err != nil {
		return "", err
	}
	h := sha256.New()
	// The folder's path keeps two tenants with files alike in name, size
	// and time (but not content) from ever sharing a snapshot.
	fmt.Fprintf(h, "reactor %x\napp %q\ndir %q\nvalidate %t\ndata %t\npyc %q\nzoneinfo %t\nlimit %d\n",
		e.reactorSum, cfg.App, cfg.Dir, cfg.Validate, cfg.DataDir != "", cfg.PycacheDir, e.zoneinfo != "", cfg.MemoryLimit)
	for _, k := range slices.Sorted(maps.Keys(cfg.Env)) {
		fmt.Fprintf(h, "env %q=%q\n", k, cfg.Env[k])
	}
	if cfg.Dir != "" {
		err := filepath.WalkDir(cfg.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(cfg.Dir, p)
			fmt.Fprintf(h, "file %q %v %d %d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("runtime: snapshot key: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// saveSnapshot readies a fresh instance (wsgi_before_snapshot) and writes
// its state to path for key, returning the snapshot open. It must be called
// before the instance serves any request; the instance stays usable.
func (i *Instance) saveSnapshot(path, key string) (*Snapshot, error) {
	if i.restored || i.served.Load() > 0 {
		return nil, errors.New("runtime: only a fresh instance that has served nothing can be saved")
	}
	ctx := i.callContext(context.Background())
	res, err := i.mod.ExportedFunction(hostabi.ExportBeforeSnapshot).Call(ctx)
	if err != nil {
		i.close()
		return nil, fmt.Errorf("runtime: wsgi_before_snapshot: %w", describeCallError(err))
	}
	if code := int32(res[0]); code != 0 {
		return nil, fmt.Errorf("runtime: the app cannot be snapshotted (wsgi_before_snapshot result %d; see the tenant's log)", code)
	}
	globals := make([]uint64, len(i.globalNames))
	for n, name := range i.globalNames {
		globals[n] = i.mod.ExportedGlobal(name).Get()
	}
	mem, ok := i.mod.Memory().Read(0, i.mod.Memory().Size())
	if !ok {
		return nil, errors.New("runtime: read linear memory")
	}
	return writeSnapshot(path, key, mem, globals)
}

// restoreGlobals sets the mutable globals of a restored instance.
func restoreGlobals(mod api.Module, names []string, values []uint64) error {
	if len(names) != len(values) {
		return fmt.Errorf("%w: %d globals, the module has %d", ErrSnapshotInvalid, len(values), len(names))
	}
	for n, name := range names {
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("runtime: global %s is not mutable", name)
		}
		g.Set(values[n])
	}
	return nil
}
