package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
)

// snapshotBuilders is how many tenants' snapshots are built at once.
const snapshotBuilders = 2

// maintainSnapshots removes the snapshots of versions no longer loaded,
// then, in the background and a few tenants at a time, opens (verifies) the
// existing ones and builds the missing ones, so that a tenant's first
// request restores its app at once rather than importing it or reading its
// image.
func (s *Server) maintainSnapshots(current map[string]*loaded) {
	store := s.cfg.Snapshots
	if store == nil {
		return
	}
	keep := map[string]bool{}
	for _, l := range current {
		keep[l.pool.SnapshotKey] = true
	}
	if err := store.Retain(keep); err != nil {
		s.log.Warn("removing old snapshots", "err", err)
	}
	s.builders.Add(1)
	go func() {
		defer s.builders.Done()
		// Two at a time, each under its tenant's init deadline, so that an
		// app whose import loops delays the others by one worker at most.
		var g errgroup.Group
		g.SetLimit(snapshotBuilders)
		for _, name := range slices.Sorted(maps.Keys(current)) {
			if s.background.Err() != nil {
				break
			}
			g.Go(func() error {
				if s.buildSnapshot(s.background, current[name]) == nil {
					s.warmUp(s.background, current[name])
				}
				return nil
			})
		}
		g.Wait()
	}()
}

// buildSnapshot opens l's snapshot, building it if there is none (or a
// damaged one); a failure is logged, and the tenant's instances then start
// fresh.
func (s *Server) buildSnapshot(ctx context.Context, l *loaded) error {
	if _, err := s.cfg.Snapshots.Open(l.pool.SnapshotKey); err == nil {
		return nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, l.pool.InitTimeout)
	defer cancel()
	key, err := s.cfg.Snapshots.Build(ctx, s.engine, l.app)
	if err == nil && key != l.pool.SnapshotKey {
		err = fmt.Errorf("server: the tenant changed while its snapshot was built")
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("snapshot not built; the tenant's instances start fresh", "tenant", l.tenant.Name, "err", err)
		}
		return err
	}
	s.log.Info("snapshot ready", "tenant", l.tenant.Name, "seconds", time.Since(start).Seconds())
	return nil
}

// warmUp sends the tenant's warm-up request (tenant.toml's warmup) to an
// instance restored from its new snapshot, to record the snapshot's write
// set; a failure is logged, and the tenant's first request records the set
// instead.
func (s *Server) warmUp(ctx context.Context, l *loaded) {
	t := l.tenant
	defer l.warmedUp.Store(true)
	if t.Warmup == "" {
		return
	}
	host := "localhost"
	for _, h := range t.Hosts {
		if !strings.Contains(h, "*") {
			host = h
			break
		}
	}
	ctx, cancel := context.WithTimeout(ctx, t.Policy.RequestTimeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, "GET", "http://"+host+t.Warmup, nil)
	if err != nil {
		s.log.Warn("warm-up request not sent", "tenant", t.Name, "err", err)
		return
	}
	r.RemoteAddr = "127.0.0.1:0"
	r.Header.Set("User-Agent", "wsgi-wasm warm-up")
	start := time.Now()
	status, err := pool.WarmUp(ctx, s.engine, s.cfg.Snapshots, l.app, l.pool.SnapshotKey, r, s.requestInfo(r, t.PathPrefix))
	switch {
	case err != nil:
		s.log.Warn("warm-up request failed; the first request records the write set", "tenant", t.Name, "path", t.Warmup, "err", err)
	case status >= 400:
		s.log.Warn("warm-up request answered an error; the first request records the write set", "tenant", t.Name, "path", t.Warmup, "status", status)
	case status > 0:
		s.log.Info("warm-up request recorded the snapshot's write set", "tenant", t.Name, "path", t.Warmup, "status", status, "seconds", time.Since(start).Seconds())
	}
}

// snapshotsReady counts the loaded tenants whose snapshot is open and, for
// those that ask for one, was warmed up.
func (s *Server) snapshotsReady() int {
	if s.cfg.Snapshots == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, l := range s.tenants {
		if s.cfg.Snapshots.Ready(l.pool.SnapshotKey) && (l.tenant.Warmup == "" || l.warmedUp.Load()) {
			n++
		}
	}
	return n
}

// BuildSnapshots waits until the background work of the last load has
// opened or built every tenant's snapshot (wsgi-wasm snapshot). It returns
// how many tenants have one, and an error naming those that do not.
func (s *Server) BuildSnapshots(ctx context.Context) (int, error) {
	if s.cfg.Snapshots == nil {
		return 0, errors.New("server: no snapshot store configured")
	}
	done := make(chan struct{})
	go func() { s.builders.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	s.mu.RLock()
	current := s.tenants
	s.mu.RUnlock()
	ok := 0
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if _, err := s.cfg.Snapshots.Open(current[name].pool.SnapshotKey); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s has no snapshot (see the log for why): %w", name, err))
			continue
		}
		ok++
	}
	return ok, errors.Join(errs...)
}
