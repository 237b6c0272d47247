package server

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// reloadDebounce lets a burst of file changes (an editor, a deploy that
// copies many files) end before the tenants are read again.
const reloadDebounce = 500 * time.Millisecond

// maxWatches bounds the folders watched for changes, every tenant's
// together (the kernel's inotify watches are per user, 8192 on some
// systems); past it, further folders are not watched, which is logged once.
const maxWatches = 8192

// Watch reloads the tenants when a file anywhere in a tenant's folder, or
// in the tenant folder itself, changes (with Config.Tenant, a file in its
// folder), or when reload receives a value
// (SIGHUP), until ctx ends. Folders are watched as they appear; a
// tenant's links are not followed (tenantfs.Walk), nor are __pycache__
// folders watched.
func (s *Server) Watch(ctx context.Context, reload <-chan os.Signal) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	watched := map[string]bool{}
	warned := false
	watch := func(dir string) {
		if watched[dir] {
			return
		}
		if len(watched) >= maxWatches {
			if !warned {
				warned = true
				s.log.Warn("too many tenant folders to watch; changes below the rest are picked up on SIGHUP only", "watched", len(watched))
			}
			return
		}
		if w.Add(dir) == nil {
			watched[dir] = true
		}
	}
	// watchTree watches dir and every folder below it.
	watchTree := func(dir string) {
		watch(dir)
		tenantfs.Walk(dir, func(e tenantfs.Entry) error {
			if !e.Type.IsDir() {
				return nil
			}
			if filepath.Base(e.Rel) == "__pycache__" {
				return tenantfs.SkipDir
			}
			watch(filepath.Join(dir, filepath.FromSlash(e.Rel)))
			return nil
		})
	}
	add := func() {
		if t := s.cfg.Tenant; t != nil {
			watchTree(t.Dir)
			return
		}
		watch(s.cfg.TenantDir)
		entries, _ := os.ReadDir(s.cfg.TenantDir)
		for _, e := range entries {
			if e.IsDir() {
				watchTree(filepath.Join(s.cfg.TenantDir, e.Name()))
			}
		}
	}
	add()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			s.log.Info("reload requested (SIGHUP)")
			s.reloadNow(ctx)
			add()
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&fsnotify.Create != 0 {
				if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() && filepath.Base(ev.Name) != "__pycache__" {
					watchTree(ev.Name) // a new folder: what is put in it counts too
				}
			}
			if ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 && watched[ev.Name] {
				delete(watched, ev.Name) // the kernel dropped its watch
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0 {
				timer = time.After(reloadDebounce)
			}
		case err, ok := <-w.Errors:
			if ok {
				s.log.Warn("file watcher", "err", err)
			}
		case <-timer:
			timer = nil
			s.log.Info("tenant files changed; reloading")
			s.reloadNow(ctx)
			add()
		}
	}
}

func (s *Server) reloadNow(ctx context.Context) {
	if err := s.Reload(ctx); err != nil {
		s.log.Error("reload failed; the previous tenants keep serving", "err", err)
	}
}
