package server

import (
	"context"
	"crypto/sha256"
	"errors"
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

// maxPollEntries bounds the entries (files and folders) one look at a
// polled tenant's folder reads: a tenant with more is neither watched nor
// polled, and reloads on SIGHUP only. A variable for tests.
var maxPollEntries = 20000

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
// would be watched, is looked at every pollInterval on a goroutine of its
// own, and a change reloads as an event would. The first tenant polled is
// logged at warning level, the others at debug. A polled tenant whose tree
// holds more than maxPollEntries entries is no longer looked at (logged at
// warning level): it reloads on SIGHUP only. On each reload, polled tenants
// that are gone are dropped, and one polled for the per-tenant bound whose
// folders went back under it is watched again.
func (s *Server) Watch(ctx context.Context, reload <-chan os.Signal) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	ws := &watchSet{w: w, log: s, maxTenant: maxTenantWatches, every: pollInterval, maxEntries: maxPollEntries,
		add: watchAdd, kick: make(chan struct{}, 1),
		watched: map[string]string{}, perTenant: map[string]int{}, polled: map[string]*pollState{}}
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
		dirs := tenants()
		ws.repoll(dirs)
		for _, dir := range dirs {
			ws.watchTenant(dir)
		}
	}
	add()
	// Polling walks trees off this goroutine, so that events and SIGHUP
	// are never kept waiting by it.
	changed := make(chan struct{}, 1)
	pollCtx, stopPolling := context.WithCancel(ctx)
	polling := make(chan struct{})
	go func() {
		defer close(polling)
		ws.pollLoop(pollCtx, changed)
	}()
	defer func() {
		stopPolling()
		<-polling
	}()
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
		case <-changed:
			timer = time.After(reloadDebounce)
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

// watchCounts returns the folders watched per tenant folder, the tenant
// folders polled, and those too large to poll (SIGHUP only), while Watch
// runs.
func (s *Server) watchCounts() (watched map[string]int, polled, sighupOnly []string) {
	s.watchMu.Lock()
	ws := s.watches
	s.watchMu.Unlock()
	if ws == nil {
		return nil, nil, nil
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	watched = map[string]int{}
	for t, n := range ws.perTenant {
		watched[t] = n
	}
	for t, st := range ws.polled {
		if st.over {
			sighupOnly = append(sighupOnly, t)
		} else {
			polled = append(polled, t)
		}
	}
	return watched, polled, sighupOnly
}

// watchSet is Watch's state: the folders watched, by tenant, and the
// tenants polled with what their trees looked like last. Watch's goroutine
// changes it, and pollLoop's the polled tenants' states; mu guards the
// maps and states.
type watchSet struct {
	w          *fsnotify.Watcher
	log        *Server
	maxTenant  int           // maxTenantWatches when Watch began
	every      time.Duration // pollInterval when Watch began
	maxEntries int           // maxPollEntries when Watch began
	add        func(*fsnotify.Watcher, string) error
	kick       chan struct{} // a tenant is newly polled: look at it now

	mu        sync.Mutex
	warned    bool
	watched   map[string]string // folder -> its tenant folder ("" for the tenant folder root)
	perTenant map[string]int
	polled    map[string]*pollState // tenant folder -> its state
}

// pollState is what pollLoop knows of a polled tenant's tree.
type pollState struct {
	fp    string // fingerprint at the last look; "" before the first
	dirs  int    // folders a watch of the tree would take, at the last look
	bound bool   // polled for the per-tenant bound, so watched again when back under it
	over  bool   // more than maxPollEntries entries: no longer looked at
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
	bound := tenant != "" && ws.perTenant[tenant] >= ws.maxTenant
	switch {
	case bound:
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
			ws.poll(tenant, why, bound)
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

// poll turns tenant over to polling (bound: for the per-tenant bound): its
// watches are given back, and pollLoop takes its first look now.
func (ws *watchSet) poll(tenant string, why error, bound bool) {
	ws.mu.Lock()
	ws.polled[tenant] = &pollState{bound: bound}
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
	select {
	case ws.kick <- struct{}{}:
	default:
	}
	level := ws.log.log.Debug
	if !warned {
		level = ws.log.log.Warn
	}
	level("tenant folder not watched; polling it for changes instead (further tenants polled are logged at debug level)",
		"dir", tenant, "every", ws.every, "reason", why)
}

// forget drops dir's watch from the counts (the kernel has dropped it),
// with the watches of the folders below it: when dir was renamed, theirs
// follow the folders to the new name, where they are stale (a folder made
// at one of their old names would not be watched), so they are removed.
func (ws *watchSet) forget(dir string) {
	ws.mu.Lock()
	if _, ok := ws.watched[dir]; !ok {
		ws.mu.Unlock()
		return
	}
	ws.unwatch(dir)
	prefix := dir + string(filepath.Separator)
	var below []string
	for d := range ws.watched {
		if strings.HasPrefix(d, prefix) {
			below = append(below, d)
			ws.unwatch(d)
		}
	}
	ws.mu.Unlock()
	for _, d := range below {
		ws.w.Remove(d) // an error: the kernel had dropped it too
	}
}

// unwatch drops dir from the counts; ws.mu is held.
func (ws *watchSet) unwatch(dir string) {
	t := ws.watched[dir]
	delete(ws.watched, dir)
	if t != "" {
		if ws.perTenant[t]--; ws.perTenant[t] <= 0 {
			delete(ws.perTenant, t)
		}
	}
}

// repoll runs on each reload with the tenant folders there are now: it
// drops the polled tenants that are gone, and those polled for the
// per-tenant bound whose trees went back under it, for watchTenant to
// watch them again.
func (ws *watchSet) repoll(tenants []string) {
	now := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		now[t] = true
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for t, st := range ws.polled {
		if !now[t] || st.bound && !st.over && st.fp != "" && st.dirs <= ws.maxTenant {
			delete(ws.polled, t)
		}
	}
}

// pollLoop looks at the polled tenants' trees every ws.every (and when one
// is newly polled) until ctx ends, and sends on changed when one changed.
func (ws *watchSet) pollLoop(ctx context.Context, changed chan<- struct{}) {
	tick := time.NewTicker(ws.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-ws.kick:
		}
		if ws.pollChanged() {
			select {
			case changed <- struct{}{}:
			default: // a change is already waiting to be taken
			}
		}
	}
}

// pollChanged looks at every polled tenant's tree and reports whether one
// changed since it was last looked at. A tree found to hold more than
// ws.maxEntries entries is no longer looked at.
func (ws *watchSet) pollChanged() bool {
	type look struct {
		tenant string
		st     *pollState
	}
	ws.mu.Lock()
	looks := make([]look, 0, len(ws.polled))
	for t, st := range ws.polled {
		if !st.over {
			looks = append(looks, look{t, st})
		}
	}
	ws.mu.Unlock()
	changed := false
	for _, l := range looks {
		fp, dirs, over := fingerprint(l.tenant, ws.maxEntries)
		ws.mu.Lock()
		if ws.polled[l.tenant] != l.st { // dropped, or polled anew, meanwhile
			ws.mu.Unlock()
			continue
		}
		switch {
		case over:
			l.st.over = true
		case l.st.fp == "":
			l.st.fp, l.st.dirs = fp, dirs // the first look
		case l.st.fp != fp:
			l.st.fp, l.st.dirs = fp, dirs
			changed = true
		}
		ws.mu.Unlock()
		if over {
			ws.log.log.Warn("tenant folder too large to poll; it reloads on SIGHUP only",
				"dir", l.tenant, "entries", fmt.Sprintf("more than %d", ws.maxEntries))
		}
	}
	return changed
}

// errTooLarge ends a fingerprint's walk.
var errTooLarge = errors.New("too many entries")

// fingerprint hashes the names, types, sizes and modification times of
// what tenant's folder holds, as it would be watched (skipWatch): a change
// that an event would report changes it. It counts the folders a watch
// would take, and reads at most limit entries: over reports a tree with
// more.
func fingerprint(tenant string, limit int) (fp string, dirs int, over bool) {
	h := sha256.New()
	entries := 0
	dirs = 1 // the tenant folder
	err := tenantfs.Walk(tenant, func(e tenantfs.Entry) error {
		if entries++; entries > limit {
			return errTooLarge
		}
		if e.Type.IsDir() {
			if skip, _ := skipWatch(e.Rel); skip {
				// What a watch of its parent would see: its name.
				fmt.Fprintf(h, "%q skipped\n", e.Rel)
				return tenantfs.SkipDir
			}
			dirs++
		}
		fmt.Fprintf(h, "%q %v %d %d\n", e.Rel, e.Type, e.Info.Size(), e.Info.ModTime().UnixNano())
		return nil
	})
	if errors.Is(err, errTooLarge) {
		return "", dirs, true
	}
	if err != nil {
		fmt.Fprintf(h, "error %v\n", err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), dirs, false
}

func (s *Server) reloadNow(ctx context.Context) {
	if err := s.Reload(ctx); err != nil {
		s.log.Error("reload failed; the previous tenants keep serving", "err", err)
	}
}
