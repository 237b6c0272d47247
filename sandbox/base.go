package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// A base image is the state of an instance that has started CPython and
// imported the standard library modules every tenant shares, but no app
// (ABI.md "Base images"); tenants' snapshots made from one leave out its
// pages and map them from its file. Why, and what tenants on one base share,
// is in README.md, "Design notes".

// baseMinRun is the fewest pages a run taken from the base image has. On
// the Flask example, single pages left the least on disk but cost ten times
// the mappings of runs of 8 and a restore several times longer; runs of 32
// left as much on disk as no base at all. benchmarks/SNAPSHOTS.md measures
// what runs of 8 cost against a snapshot of its own.
const baseMinRun = 8

// basePrefix starts the key of every base image.
const basePrefix = "base-"

// pageRuns are runs of pages of pageSize bytes, in order and apart.
type pageRuns struct {
	pageSize uint32
	runs     []pageRun
}

// span is r's byte range.
func (p pageRuns) span(r pageRun) (lo, hi uint64) {
	return uint64(r.first) * uint64(p.pageSize), uint64(r.first+r.count) * uint64(p.pageSize)
}

func (p pageRuns) bytes() uint64 {
	n := uint64(0)
	for _, r := range p.runs {
		n += uint64(r.count)
	}
	return n * uint64(p.pageSize)
}

// equalRuns compares mem with the base image s, page by page, and returns
// the runs of at least baseMinRun pages that are equal.
func (s *Snapshot) equalRuns(mem []byte) (pageRuns, error) {
	release, err := s.hold()
	if err != nil {
		return pageRuns{}, err
	}
	defer release()
	page := os.Getpagesize()
	runs := pageRuns{pageSize: uint32(page)}
	n := min(uint64(len(mem)), s.memSize) / uint64(page)
	buf := make([]byte, 256*page)
	start := -1 // the first page of the current run of equal pages
	end := func(i int) {
		if start >= 0 && i-start >= baseMinRun {
			runs.runs = append(runs.runs, pageRun{first: uint32(start), count: uint32(i - start)})
		}
		start = -1
	}
	for done := 0; done < int(n); {
		chunk := buf[:min(len(buf), (int(n)-done)*page)]
		if _, err := s.file.ReadAt(chunk, snapshotDataOffset+int64(done*page)); err != nil {
			return pageRuns{}, fmt.Errorf("read base image: %w", err)
		}
		for off := 0; off < len(chunk); off += page {
			i := done + off/page
			if bytes.Equal(chunk[off:off+page], mem[i*page:(i+1)*page]) {
				if start < 0 {
					start = i
				}
			} else {
				end(i)
			}
		}
		done += len(chunk) / page
	}
	end(int(n))
	return runs, nil
}

// baseMounts names the guest folders an instance of cfg has: instances
// with the same layout can start from one base image.
func (e *Engine) baseMounts(cfg AppConfig) string {
	return fmt.Sprintf("app=%t data=%t pyc=%t zoneinfo=%t", cfg.Dir != "", cfg.DataDir != "", cfg.PycacheDir != "", e.zoneinfo != "")
}

// baseKey names the base image for instances of cfg: the interpreter
// module (which embeds the bootstrap and its list of shared modules) and
// the mount layout.
func (e *Engine) baseKey(ctx context.Context, cfg AppConfig) (string, error) {
	if _, _, err := e.reactor(ctx); err != nil {
		return "", err
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "base\nreactor %x\nmounts %s\n", e.reactorSum, e.baseMounts(cfg)))
	return basePrefix + hex.EncodeToString(sum[:16]), nil
}

// newBaseInstance starts an instance without an app, with cfg's mount
// layout on the empty folder empty (wsgi_init_base).
func (e *Engine) newBaseInstance(ctx context.Context, cfg AppConfig, empty string) (*Instance, error) {
	base := AppConfig{App: "(base image)", Log: cfg.Log, Stdio: cfg.Stdio}
	if cfg.Dir != "" {
		base.Dir = empty
	}
	if cfg.DataDir != "" {
		base.DataDir = empty
	}
	if cfg.PycacheDir != "" {
		base.PycacheDir = empty
	}
	return e.start(ctx, base, nil, asBase)
}

// StartFromBase makes an instance of cfg from a base image: a restore of
// it, then the import of the app (wsgi_init_app). The instance is fresh:
// it can be saved as the app's snapshot, whose file then holds only the
// pages that differ from the base's.
func (e *Engine) startFromBase(ctx context.Context, cfg AppConfig, base *Snapshot) (*Instance, error) {
	return e.start(ctx, cfg, base, fromBase)
}

// baseImage returns the open base image for instances of cfg, making and
// saving it first if the store has none.
func (s *SnapshotStore) baseImage(ctx context.Context, e *Engine, cfg AppConfig) (*Snapshot, error) {
	key, err := e.baseKey(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if snap, err := s.Open(key); err == nil {
		return snap, nil
	}
	v, err, _ := s.building.Do(key, func() (any, error) {
		if snap, err := s.Open(key); err == nil {
			return snap, nil
		}
		empty := filepath.Join(s.dir, "empty")
		if err := os.MkdirAll(empty, 0o500); err != nil {
			return nil, fmt.Errorf("sandbox: base image: %w", err)
		}
		inst, err := e.newBaseInstance(ctx, cfg, empty)
		if err != nil {
			return nil, fmt.Errorf("sandbox: base image: %w", err)
		}
		defer inst.Close(ctx)
		return s.Save(ctx, inst, key)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Snapshot), nil
}

// NewInstance starts an instance of cfg that has no snapshot to restore:
// from the shared base image when the store has that on (made first if
// missing), which skips the interpreter's start, and otherwise as
// Engine.NewInstance does. An app whose import fails is not tried again
// from scratch; a base image that fails is logged to cfg.Log and skipped.
func (s *SnapshotStore) NewInstance(ctx context.Context, e *Engine, cfg AppConfig) (*Instance, error) {
	if !s.sharedBase {
		return e.NewInstance(ctx, cfg)
	}
	base, err := s.baseImage(ctx, e, cfg)
	if err == nil {
		var inst *Instance
		inst, err = e.startFromBase(ctx, cfg, base)
		var initErr *InitError
		if err == nil || errors.As(err, &initErr) || ctx.Err() != nil {
			return inst, err
		}
	}
	if cfg.Log != nil {
		cfg.Log(hostabi.LogError, fmt.Appendf(nil, "wsgi-wasm: base image not used, starting from scratch: %v", err))
	}
	return e.NewInstance(ctx, cfg)
}
