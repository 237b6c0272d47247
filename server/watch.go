package server

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadDebounce lets a burst of file changes (an editor, a deploy that
// copies many files) end before the tenants are read again.
const reloadDebounce = 500 * time.Millisecond

// Watch reloads the tenants when a file in the tenant folder or in a
// tenant's own folder changes, or when reload receives a value (SIGHUP),
// until ctx ends.
func (s *Server) Watch(ctx context.Context, reload <-chan os.Signal) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	add := func() {
		w.Add(s.cfg.TenantDir)
		entries, _ := os.ReadDir(s.cfg.TenantDir)
		for _, e := range entries {
			if e.IsDir() {
				w.Add(filepath.Join(s.cfg.TenantDir, e.Name()))
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
