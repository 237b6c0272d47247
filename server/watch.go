package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// reloadDebounce lets a burst of file changes (an editor, a deploy that
// copies many files) end before the tenants are read again.
const reloadDebounce = 500 * time.Millisecond

// maxWatches bounds the folders watched for changes, every tenant's
// together (the kernel's inotify watches are per user, 8192 on some
// systems); a tenant whose folders would pass it is polled instead.
const maxWatches = 8192

// maxTenantWatches bounds one tenant's watched folders: a tenant with more
// is polled instead, so that one large tenant cannot use up the watches of
// the others. A variable for tests.
var maxTenantWatches = 256

// pollInterval is how often a polled tenant's folder is looked at. A
// variable for tests.
var pollInterval = 2 * time.Second

// watchAdd adds a watch; tests replace it to have the system refuse one.
var watchAdd = (*fsnotify.Watcher).Add

// Watch reloads the tenants when a file in a tenant's folder, or the
// tenant folder itself, changes (with Config.Tenant, a file in its
// folder), or when reload receives a value (SIGHUP), until ctx ends.
//
// Folders are watched with inotify as they appear, at most
// maxTenantWatches per tenant and maxWatches in all. site-packages is
// watched itself but not below (an install replaces it whole, and its
// entries are added or removed at its top; an edit deeper in it is picked
// up on SIGHUP), nor are __pycache__ folders or an install's staging
// folder; a tenant's links are not followed (tenantfs.Walk). A tenant
// whose folders would pass a bound, or one of whose watches the system
// refuses (the per-user inotify limit), is polled instead: its tree, as it
// would be watched, is looked at every pollInterval, and a change reloads
// as an event would. The first tenant polled is logged at warning level,
// the others at debug.
func (s *Server) Watch(ctx context.Context, reload <-chan os.Signal) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	ws := &watchSet{w: w, log: s, maxTenant: maxTenantWatches, every: pollInterval, add: watchAdd,
		watched: map[string]string{}, perTenant: map[string]int{}, polled: map[string]string{}}
	s.watchMu.Lock()
	s.watches = ws
	s.watchMu.Unlock()
	defer func() {
		s.watchMu.Lock()
		s.watches = nil
		s.watchMu.Unlock()
	}()
	tenants := func() []string {
		if t := s.cfg.Tenant; t != nil {
			return []string{t.Dir}
		}
		var dirs []string
		entries, _ := os.ReadDir(s.cfg.TenantDir)
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(s.cfg.TenantDir, e.Name()))
			}
		}
		return dirs
	}
	add := func() {
		if s.cfg.Tenant == nil {
			ws.watchDir(s.cfg.TenantDir, "")
		}
		for _, dir := range tenants() {
			ws.watchTenant(dir)
		}
	}
	add()
	poll := time.NewTicker(ws.every)
	defer poll.Stop()
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
				if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() {
					ws.created(ev.Name, s.tenantOf(ev.Name))
				}
			}
			if ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				ws.forget(ev.Name) // the kernel dropped its watch
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0 {
				timer = time.After(reloadDebounce)
			}
		case err, ok := <-w.Errors:
			if ok {
				s.log.Warn("file watcher", "err", err)
			}
		case <-poll.C:
			if ws.pollChanged() {
				timer = time.After(reloadDebounce)
			}
		case <-timer:
			timer = nil
			s.log.Info("tenant files changed; reloading")
			s.reloadNow(ctx)
			add()
		}
	}
}

// tenantOf names the tenant folder that path is in ("" for none).
func (s *Server) tenantOf(path string) string {
	if t := s.cfg.Tenant; t != nil {
		return t.Dir
	}
	rel, err := filepath.Rel(s.cfg.TenantDir, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return ""
	}
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	return filepath.Join(s.cfg.TenantDir, first)
}

// watchCounts returns the folders watched per tenant folder and the tenant
// folders polled, while Watch runs.
func (s *Server) watchCounts() (watched map[string]int, polled []string) {
	s.watchMu.Lock()
	ws := s.watches
	s.watchMu.Unlock()
	if ws == nil {
		return nil, nil
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	watched = map[string]int{}
	for t, n := range ws.perTenant {
		watched[t] = n
	}
	for t := range ws.polled {
		polled = append(polled, t)
	}
	return watched, polled
}

// watchSet is Watch's state: the folders watched, by tenant, and the
// tenants polled with their trees' last fingerprints. Watch's goroutine
// changes it; mu lets watchCounts read it.
type watchSet struct {
	w         *fsnotify.Watcher
	log       *Server
	maxTenant int           // maxTenantWatches when Watch began
	every     time.Duration // pollInterval when Watch began
	add       func(*fsnotify.Watcher, string) error
	warned    bool

	mu        sync.Mutex
	watched   map[string]string // folder -> its tenant folder ("" for the tenant folder root)
	perTenant map[string]int
	polled    map[string]string // tenant folder -> fingerprint
}

// skipWatch reports whether the folder rel (slash-separated, relative to a
// tenant's folder) is left unwatched with its contents, and whether its
// contents only are (site-packages).
func skipWatch(rel string) (skip, shallow bool) {
	base := filepath.Base(rel)
	switch {
	case base == "__pycache__", strings.HasPrefix(base, ".site-packages.new-"):
		return true, false
	case strings.HasPrefix(rel, "site-packages/"):
		return true, false
	case rel == "site-packages":
		return false, true
	}
	return false, false
}

// watchTenant watches tenant's folder and the folders below it, unless the
// tenant is polled or passes a bound, which makes it polled.
func (ws *watchSet) watchTenant(tenant string) {
	ws.mu.Lock()
	_, polled := ws.polled[tenant]
	ws.mu.Unlock()
	if polled {
		return
	}
	ws.watchBelow(tenant, tenant, "")
}

// watchBelow watches dir (rel below tenant) and the folders below it.
func (ws *watchSet) watchBelow(tenant, dir, rel string) {
	skip, shallow := skipWatch(rel)
	if skip || !ws.watchDir(dir, tenant) || shallow {
		return
	}
	tenantfs.Walk(dir, func(e tenantfs.Entry) error {
		if !e.Type.IsDir() {
			return nil
		}
		sub := e.Rel
		if rel != "" {
			sub = rel + "/" + e.Rel
		}
		skip, shallow := skipWatch(sub)
		if skip {
			return tenantfs.SkipDir
		}
		if !ws.watchDir(filepath.Join(dir, filepath.FromSlash(e.Rel)), tenant) {
			return fmt.Errorf("polled") // ends the walk: the tenant is polled now
		}
		if shallow {
			return tenantfs.SkipDir
		}
		return nil
	})
}

// created handles a new folder at path in tenant's folder ("" for a new
// tenant folder): what is put in it counts too.
func (ws *watchSet) created(path, tenant string) {
	if tenant == "" {
		return
	}
	if path == tenant {
		ws.watchTenant(tenant)
		return
	}
	ws.mu.Lock()
	_, polled := ws.polled[tenant]
	ws.mu.Unlock()
	rel, err := filepath.Rel(tenant, path)
	if polled || err != nil {
		return
	}
	ws.watchBelow(tenant, path, filepath.ToSlash(rel))
}

// watchDir watches dir for tenant ("" for the folder of all tenants); it
// reports false if the tenant is polled instead (a bound passed, or the
// system refused the watch).
func (ws *watchSet) watchDir(dir, tenant string) bool {
	ws.mu.Lock()
	if _, ok := ws.watched[dir]; ok {
		ws.mu.Unlock()
		return true
	}
	if _, ok := ws.polled[tenant]; ok && tenant != "" {
		ws.mu.Unlock()
		return false
	}
	var why error
	switch {
	case tenant != "" && ws.perTenant[tenant] >= ws.maxTenant:
		why = fmt.Errorf("more than %d folders", ws.maxTenant)
	case len(ws.watched) >= maxWatches:
		why = fmt.Errorf("more than %d folders watched in all", maxWatches)
	}
	ws.mu.Unlock()
	if why == nil {
		why = ws.add(ws.w, dir)
	}
	if why != nil {
		if tenant != "" {
			ws.poll(tenant, why)
		} else {
			ws.log.log.Warn("cannot watch the tenant folder; new tenants are found on SIGHUP only", "dir", dir, "err", why)
		}
		return false
	}
	ws.mu.Lock()
	ws.watched[dir] = tenant
	if tenant != "" {
		ws.perTenant[tenant]++
	}
	ws.mu.Unlock()
	return true
}

// poll turns tenant over to polling: its watches are given back.
func (ws *watchSet) poll(tenant string, why error) {
	fp := fingerprint(tenant)
	ws.mu.Lock()
	ws.polled[tenant] = fp
	var drop []string
	for dir, t := range ws.watched {
		if t == tenant {
			drop = append(drop, dir)
			delete(ws.watched, dir)
		}
	}
	delete(ws.perTenant, tenant)
	warned := ws.warned
	ws.warned = true
	ws.mu.Unlock()
	for _, dir := range drop {
		ws.w.Remove(dir)
	}
	level := ws.log.log.Debug
	if !warned {
		level = ws.log.log.Warn
	}
	level("tenant folder not watched; polling it for changes instead (further tenants polled are logged at debug level)",
		"dir", tenant, "every", ws.every, "reason", why)
}

// forget drops dir's watch from the counts (the kernel has dropped it).
func (ws *watchSet) forget(dir string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	t, ok := ws.watched[dir]
	if !ok {
		return
	}
	delete(ws.watched, dir)
	if t != "" {
		if ws.perTenant[t]--; ws.perTenant[t] <= 0 {
			delete(ws.perTenant, t)
		}
	}
}

// pollChanged looks at every polled tenant's tree and reports whether one
// changed since it was last looked at.
func (ws *watchSet) pollChanged() bool {
	ws.mu.Lock()
	tenants := make([]string, 0, len(ws.polled))
	for t := range ws.polled {
		tenants = append(tenants, t)
	}
	ws.mu.Unlock()
	changed := false
	for _, t := range tenants {
		fp := fingerprint(t)
		ws.mu.Lock()
		if ws.polled[t] != fp {
			ws.polled[t] = fp
			changed = true
		}
		ws.mu.Unlock()
	}
	return changed
}

// fingerprint hashes the names, types, sizes and modification times of
// what tenant's folder holds, as it would be watched (skipWatch): a change
// that an event would report changes it.
func fingerprint(tenant string) string {
	h := sha256.New()
	err := tenantfs.Walk(tenant, func(e tenantfs.Entry) error {
		if e.Type.IsDir() {
			if skip, _ := skipWatch(e.Rel); skip {
				// What a watch of its parent would see: its name.
				fmt.Fprintf(h, "%q skipped\n", e.Rel)
				return tenantfs.SkipDir
			}
		}
		fmt.Fprintf(h, "%q %v %d %d\n", e.Rel, e.Type, e.Info.Size(), e.Info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		fmt.Fprintf(h, "error %v\n", err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func (s *Server) reloadNow(ctx context.Context) {
	if err := s.Reload(ctx); err != nil {
		s.log.Error("reload failed; the previous tenants keep serving", "err", err)
	}
}
