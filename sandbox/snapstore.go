package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// SnapshotStore is a folder of snapshot files, one per SnapshotKey. Files
// are written atomically, verified when first opened, and removed when found
// invalid, so a damaged file costs one fresh start, never a bad restore.
// A verified file stays open for the store's life (or until Retain drops
// it), so that a tenant whose pool was closed restores again without
// reading its image anew.
type SnapshotStore struct {
	dir        string
	sharedBase bool // tenants' snapshots are made from a shared base image (base.go)

	mu       sync.Mutex
	open     map[string]*Snapshot
	building singleflight.Group // one Build per key at a time
}

const snapshotExt = ".snap"

// NewSnapshotStore opens (creating it, private to this user) a folder of
// snapshots. Each tenant's snapshot is a whole image of its own, made from
// an instance started from scratch, unless WithSharedBase says otherwise.
func NewSnapshotStore(dir string, opts ...StoreOption) (*SnapshotStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: snapshot folder: %w", err)
	}
	s := &SnapshotStore{dir: dir, open: map[string]*Snapshot{}}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// StoreOption configures a SnapshotStore.
type StoreOption func(*SnapshotStore)

// WithSharedBase makes tenants' snapshots from a base image they share
// (base.go): their files hold only the pages that differ from it, and they
// are built in half the time of a fresh start, but every restore maps the
// base's runs too and the tenants on one base share a string-hash secret.
// benchmarks/SNAPSHOTS.md measures both ways; without the option, each
// snapshot holds all of its pages and has a secret of its own.
func WithSharedBase() StoreOption { return func(s *SnapshotStore) { s.sharedBase = true } }

// DefaultSnapshotDir is the snapshots folder of the tenants below root,
// beside the compilation cache: snapshots/<hash of root's absolute path>.
// Servers of different trees never share a folder, so one's Retain never
// removes another's snapshots.
func DefaultSnapshotDir(cacheDir, root string) string {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(filepath.Dir(cacheDir), "snapshots", hex.EncodeToString(sum[:8]))
}

// Dir is the store's folder.
func (s *SnapshotStore) Dir() string { return s.dir }

// Path is where the snapshot of key lives.
func (s *SnapshotStore) Path(key string) string { return filepath.Join(s.dir, key+snapshotExt) }

// Open returns the verified snapshot of key, which the store owns. It
// returns an error wrapping fs.ErrNotExist when there is none, and one
// wrapping ErrSnapshotInvalid (after removing the file) when the file is
// damaged or not for key.
func (s *SnapshotStore) Open(key string) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openLocked(key, true)
}

// openLocked is Open with s.mu held; a snapshot made from a base image is
// valid only with that base image, opened first, and only in a store that
// shares one (WithSharedBase): a store without is refused the base's
// shared string-hash secret, so a snapshot made before --snapshot-base was
// turned off is rebuilt. (The other way round, a whole image stays valid.)
func (s *SnapshotStore) openLocked(key string, mayHaveBase bool) (*Snapshot, error) {
	if snap, ok := s.open[key]; ok {
		return snap, nil
	}
	snap, err := openSnapshot(s.Path(key), key)
	if err == nil && snap.baseKey != "" {
		var base *Snapshot
		switch {
		case !mayHaveBase:
			err = fmt.Errorf("%w: %s: a base image made from another", ErrSnapshotInvalid, s.Path(key))
		case !s.sharedBase:
			err = fmt.Errorf("%w: %s: made from a shared base image, which this store does not use", ErrSnapshotInvalid, s.Path(key))
		default:
			base, err = s.openLocked(snap.baseKey, false)
			switch {
			case err == nil && base.sum != snap.baseSum:
				err = fmt.Errorf("%w: %s: made from another base image than %s", ErrSnapshotInvalid, s.Path(key), base.path)
			case errors.Is(err, ErrSnapshotInvalid) || errors.Is(err, fs.ErrNotExist):
				err = fmt.Errorf("%w: %s: its base image: %w", ErrSnapshotInvalid, s.Path(key), err)
			}
		}
		if err != nil {
			snap.close()
		}
		snap.base = base
	}
	if errors.Is(err, ErrSnapshotInvalid) {
		os.Remove(s.Path(key))
	}
	if err != nil {
		return nil, err
	}
	s.open[key] = snap
	return snap, nil
}

// Ready reports whether the snapshot of key is open, verified.
func (s *SnapshotStore) Ready(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.open[key]
	return ok
}

// Discard closes and removes the snapshot of key, e.g. after a restore
// from it failed; the next instance starts fresh and saves a new one.
func (s *SnapshotStore) Discard(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap, ok := s.open[key]; ok {
		snap.close()
		delete(s.open, key)
	}
	os.Remove(s.Path(key))
	os.Remove(writeSetPath(s.Path(key)))
}

// Close closes every open snapshot; instances restored from them keep
// working.
func (s *SnapshotStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, snap := range s.open {
		snap.close()
		delete(s.open, key)
	}
	return nil
}

// Save readies a fresh instance that has served nothing
// (wsgi_before_snapshot), writes its snapshot under key and returns it
// open, owned by the store as Open's are; the instance stays usable. The
// guest's part ends at ctx's deadline (the instance is then closed).
func (s *SnapshotStore) Save(ctx context.Context, inst *Instance, key string) (*Snapshot, error) {
	snap, err := inst.saveSnapshot(ctx, s.Path(key), key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.open[key]; ok {
		old.close() // a concurrent save of the same key replaced its file
	}
	s.open[key] = snap
	return snap, nil
}

// Build starts a fresh instance of cfg, saves its snapshot and closes the
// instance; it returns the key. An existing valid snapshot is kept, and
// concurrent Builds of one key share the work.
func (s *SnapshotStore) Build(ctx context.Context, e *Engine, cfg AppConfig) (string, error) {
	key, err := e.SnapshotKey(ctx, cfg)
	if err != nil {
		return "", err
	}
	_, err, _ = s.building.Do(key, func() (any, error) {
		if _, err := s.Open(key); err == nil {
			return nil, nil
		}
		inst, err := s.NewInstance(ctx, e, cfg)
		if err != nil {
			return nil, err
		}
		defer inst.Close(ctx)
		_, err = s.Save(ctx, inst, key)
		return nil, err
	})
	return key, err
}

// Retain removes every snapshot (and its write set) whose key is not in
// keep, and leftovers of writes interrupted over an hour ago (younger ones
// may be in progress). Base images stay while a snapshot kept is made from
// them, and while open.
func (s *SnapshotStore) Retain(keep map[string]bool) error {
	kept := make(map[string]bool, len(keep))
	s.mu.Lock()
	for key, ok := range keep {
		if !ok {
			continue
		}
		kept[key] = true
		base := ""
		if snap, ok := s.open[key]; ok {
			base = snap.baseKey
		} else {
			base = peekBaseKey(s.Path(key))
		}
		if base != "" {
			kept[base] = true
		}
	}
	for key, snap := range s.open {
		if strings.HasPrefix(key, basePrefix) && snap.baseKey == "" {
			kept[key] = true
		}
	}
	keep = kept
	for key, snap := range s.open {
		if !keep[key] {
			snap.close()
			delete(s.open, key)
		}
	}
	s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("sandbox: snapshot folder: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		key, ours := strings.CutSuffix(name, snapshotExt)
		if !ours {
			key, ours = strings.CutSuffix(name, snapshotExt+writeSetExt)
		}
		if e.IsDir() || (ours && keep[key]) {
			continue
		}
		if !ours {
			info, err := e.Info()
			if !strings.Contains(name, snapshotExt) || !strings.Contains(name, ".tmp-") || err != nil || time.Since(info.ModTime()) < time.Hour {
				continue
			}
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
