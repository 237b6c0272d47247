package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// logTenant logs what the server says about a tenant (tenant=name, err),
// in the server's log and the tenant's file.
func (s *Server) logTenant(level slog.Level, name, msg string, err error) {
	s.files.logger(s.log, name).Log(context.Background(), level, msg, "err", err)
}

func (s *Server) load(ctx context.Context) error {
	var entries []os.DirEntry
	if s.cfg.Tenant == nil {
		var err error
		if entries, err = os.ReadDir(s.cfg.TenantDir); err != nil {
			return fmt.Errorf("server: tenant folder: %w", err)
		}
	}
	s.mu.RLock()
	previous := s.tenants
	s.mu.RUnlock()
	loadedTenants := map[string]*loaded{}
	broken := map[string]string{}
	keep := func(name string, err error) bool {
		// A broken new version leaves the old one serving.
		if old, ok := previous[name]; ok {
			s.logTenant(slog.LevelError, name, "tenant reload failed; the previous version keeps serving", err)
			loadedTenants[name] = old
			return true
		}
		return false
	}
	if t := s.cfg.Tenant; t != nil {
		l, err := s.prepare(ctx, t)
		if err != nil {
			return fmt.Errorf("server: %s: %w", t.Name, err)
		}
		if old := previous[t.Name]; old != nil && old.key == l.key {
			l = old
		}
		loadedTenants[t.Name] = l
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.cfg.TenantDir, e.Name())
		if _, err := os.Lstat(filepath.Join(dir, tenants.FileName)); err != nil {
			continue
		}
		t, err := tenants.Load(dir, s.cfg.Ceiling)
		if err == nil {
			err = s.hostsAssigned(t)
		}
		if err != nil && keep(e.Name(), err) {
			continue
		}
		if err != nil {
			s.logTenant(slog.LevelError, e.Name(), "tenant not loaded", err)
			for _, h := range hostsOf(dir) {
				if s.mayHold(e.Name(), h) {
					broken[h] = err.Error()
				}
			}
			continue
		}
		l, err := s.prepare(ctx, t)
		if old := previous[t.Name]; err == nil && old != nil && old.key == l.key {
			// Unchanged: keep the very same version, whose in-flight
			// count covers the requests routed to it so far.
			l = old
		} else if err == nil {
			err = s.trial(ctx, l, old)
		}
		if err != nil && keep(t.Name, err) {
			continue
		}
		if err != nil {
			s.logTenant(slog.LevelError, t.Name, "tenant not loaded", err)
			for _, h := range t.Hosts {
				if s.mayHold(t.Name, h) {
					broken[strings.ToLower(h)] = err.Error()
				}
			}
			continue
		}
		loadedTenants[t.Name] = l
	}
	refused := s.refuseHostConflicts(loadedTenants, previous, broken)
	refusedVersions := map[string]*loaded{}
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		refusedVersions[name] = loadedTenants[name]
		delete(loadedTenants, name)
	}
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		if old, ok := previous[name]; ok && s.keepsNoConflict(name, old, loadedTenants) {
			s.logTenant(slog.LevelError, name, "tenant reload refused; the previous version keeps serving", refused[name])
			loadedTenants[name] = old
			continue
		}
		s.logTenant(slog.LevelError, name, "tenant not loaded", refused[name])
		// Its hosts that no other tenant owns answer 503 rather than reach
		// the catch-all.
		for _, h := range refusedVersions[name].tenant.Hosts {
			if h = strings.ToLower(h); !ownedByAnother(loadedTenants, h) && broken[h] == "" && s.mayHold(name, h) {
				broken[h] = refused[name].Error()
			}
		}
	}
	var routes []route
	for _, name := range slices.Sorted(maps.Keys(loadedTenants)) {
		l := loadedTenants[name]
		for _, h := range l.tenant.Hosts {
			routes = append(routes, route{host: strings.ToLower(h), prefix: l.tenant.PathPrefix, name: name})
		}
		if prev := previous[name]; prev != l {
			s.log.Info("tenant loaded", "tenant", name, "app", l.tenant.App, "hosts", l.tenant.Hosts, "prefix", l.tenant.PathPrefix)
		}
	}
	sort.SliceStable(routes, func(i, j int) bool {
		if a, b := hostRank(routes[i].host), hostRank(routes[j].host); a != b {
			return a > b
		}
		return len(routes[i].prefix) > len(routes[j].prefix)
	})
	s.mu.Lock()
	s.routes, s.broken, s.tenants = routes, broken, loadedTenants
	s.mu.Unlock()
	for name, old := range previous {
		if cur, ok := loadedTenants[name]; !ok || cur.key != old.key {
			s.mu.Lock()
			if s.retiring == nil {
				s.retiring = map[*loaded]bool{}
			}
			s.retiring[old] = true
			s.mu.Unlock()
			go s.retire(name, old)
		}
	}
	s.maintainSnapshots(loadedTenants)
	s.pruneCompiled()
	return nil
}

// compileTimeout bounds compiling a tenant's sources to .pyc (Django and
// its dependencies take seconds); a tenant whose compile does not end by
// then is not loaded.
const compileTimeout = 2 * time.Minute

// retire closes a version that is no longer routed once the requests routed
// to it have ended, so that they finish on the old version (none of them
// finds its pool closed) while new ones reach the new version. A version
// that became current again meanwhile (an edit undone) is kept.
func (s *Server) retire(name string, old *loaded) {
	old.inFlight.Wait()
	defer func() {
		s.mu.Lock()
		delete(s.retiring, old)
		s.mu.Unlock()
	}()
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.RLock()
	cur, ok := s.tenants[name]
	s.mu.RUnlock()
	if ok && cur.key == old.key {
		return
	}
	s.warm.Remove(old.key)
	s.log.Info("tenant version retired", "tenant", name)
}

// Reload reads the tenant folder again and swaps in the new routes
// atomically; unchanged tenants keep their warm instances. The tenants'
// sources are compiled first, outside the reload lock, so that the load
// under it finds them in the .pyc cache.
func (s *Server) Reload(ctx context.Context) error {
	s.precompile(ctx)
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.load(ctx)
}

// precompile compiles the sources of every tenant that loads, into the
// .pyc cache; errors are left for the load to report.
func (s *Server) precompile(ctx context.Context) {
	entries, err := os.ReadDir(s.cfg.TenantDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || ctx.Err() != nil {
			continue
		}
		t, err := tenants.Load(filepath.Join(s.cfg.TenantDir, e.Name()), s.cfg.Ceiling)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, compileTimeout)
		s.engine.CompileApp(cctx, t.Dir, uint64(t.Policy.MemoryMB)<<20)
		cancel()
	}
}

// TenantAppConfig is the sandbox configuration serve gives the tenant t
// (and wsgi-wasm exec too): its folder, its [env], its memory cap and, if
// its policy grants one, its data folder dataRoot/<tenant> (dataRoot
// itself if oneTenant, as run's --data-dir), created, with its quota.
// PycacheDir, Log and Outbound (the tenant's outbound.Gate) are the
// caller's.
func TenantAppConfig(t *tenants.Tenant, dataRoot string, oneTenant bool) (sandbox.AppConfig, error) {
	app := sandbox.AppConfig{App: t.App, Dir: t.Dir, Env: t.Env, MemoryLimit: uint64(t.Policy.MemoryMB) << 20,
		MaxConnections: t.Policy.OutboundConnections}
	if app.MaxConnections == 0 {
		app.MaxConnections = -1 // the policy's 0 is none
	}
	for _, rel := range t.PythonPath {
		app.PythonPath = append(app.PythonPath, path.Join(sandbox.GuestAppDir, rel))
	}
	if !t.Policy.WritableData {
		return app, nil
	}
	if dataRoot == "" {
		return app, errors.New("server: tenant wants a writable data folder but the server has no --data-dir")
	}
	app.DataDir = filepath.Join(dataRoot, t.Name)
	if oneTenant {
		app.DataDir = dataRoot
	}
	app.DataMaxBytes = int64(t.Policy.DataMaxMB) << 20
	if err := os.MkdirAll(app.DataDir, 0o750); err != nil {
		return app, err
	}
	return app, nil
}

// prepare compiles the tenant's code and derives its runtime config.
func (s *Server) prepare(ctx context.Context, t *tenants.Tenant) (*loaded, error) {
	cctx, cancel := context.WithTimeout(ctx, compileTimeout)
	defer cancel()
	pyc, err := s.engine.CompileApp(cctx, t.Dir, uint64(t.Policy.MemoryMB)<<20)
	if err != nil {
		return nil, err
	}
	var file io.Writer
	if s.files != nil {
		if f := s.files.file(t.Name); f != nil {
			file = f
		}
	}
	log := s.files.logger(s.log, t.Name)
	guestLog := NewTenantLog(s.log.With("tenant", t.Name), file)
	app, err := TenantAppConfig(t, s.cfg.DataDir, s.cfg.Tenant != nil)
	if err != nil {
		return nil, err
	}
	app.PycacheDir, app.Log = pyc, guestLog
	app.Outbound = s.outboundGate(t, log)
	// What the tenant's configuration is: its tenant.toml, or the tenant
	// as given.
	toml := fmt.Appendf(nil, "%+v", *t)
	if s.cfg.Tenant == nil {
		if toml, err = os.ReadFile(filepath.Join(t.Dir, tenants.FileName)); err != nil {
			return nil, err
		}
	}
	// The snapshot key covers the app's configuration and every file of the
	// tenant's folder, so it also names the tenant's version.
	snapKey, err := s.engine.SnapshotKey(ctx, app)
	if err != nil {
		return nil, err
	}
	version := sha256.Sum256(append(toml, snapKey...))
	pcfg := pool.Config{
		Snapshots: s.cfg.Snapshots, SnapshotKey: snapKey,
		MinWarm: t.Pool.MinWarm, MaxInstances: t.Policy.MaxInstances, QueueLength: queueLength(t.Policy.QueueLength),
		MaxRequests: t.Pool.MaxRequests, MaxRequestsJitter: t.Pool.MaxRequestsJitter, RequestTimeout: t.Policy.RequestTimeout,
		InitTimeout: initTimeout(t.Policy), Log: log,
	}
	key := t.Name + "@" + hex.EncodeToString(version[:6])
	return &loaded{key: key, tenant: t, app: app, pool: pcfg, guestLg: guestLog}, nil
}

// trial starts one instance of a changed version before it replaces the
// serving one, so that a new version whose app no longer imports (or fails
// at import) is logged and leaves the old version serving, as a bad
// tenant.toml does. New tenants are not tried: they answer 503 until they
// start.
func (s *Server) trial(ctx context.Context, l, old *loaded) error {
	if old == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.pool.InitTimeout)
	defer cancel()
	inst, err := s.engine.NewInstance(ctx, l.app)
	if err != nil {
		return err
	}
	defer inst.Close(context.Background())
	// The trial instance is fresh and has served nothing: it makes the new
	// version's snapshot, which the background work would otherwise build
	// with a start of its own.
	if store := s.cfg.Snapshots; store != nil {
		if _, err := store.Save(ctx, inst, l.pool.SnapshotKey); err != nil {
			s.log.Warn("snapshot not built; the tenant's instances start fresh", "tenant", l.tenant.Name, "err", err)
		}
	}
	return nil
}

// Starting an instance (the interpreter and the app's import, or a
// snapshot's build) may take the tenant's request timeout, but never less
// than minInitTimeout (a large app's first import on a busy machine) nor
// more than maxInitTimeout: an import that loops is stopped then, whatever
// the policy says.
const (
	minInitTimeout = 10 * time.Second
	maxInitTimeout = time.Minute
)

func initTimeout(p policies.Policy) time.Duration {
	return min(max(p.RequestTimeout, minInitTimeout), maxInitTimeout)
}

// queueLength is the pool's setting for a policy's queue_length, which
// means what it says: 0 lets no request wait.
func queueLength(n int) int {
	if n == 0 {
		return pool.NoQueue
	}
	return n
}

// hostsOf reads the hosts of a tenant.toml that did not validate, so that
// its hosts answer 503 instead of falling through to another tenant.
func hostsOf(dir string) []string {
	b, err := tenantfs.ReadFile(dir, tenants.FileName, tenants.MaxFileSize)
	if err != nil {
		return nil
	}
	var hosts []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "hosts") {
			continue
		}
		for _, part := range strings.Split(line, "\"")[1:] {
			if p := strings.TrimSpace(part); p != "" && !strings.ContainsAny(p, ",[]=") {
				hosts = append(hosts, strings.ToLower(p))
			}
		}
	}
	return hosts
}
