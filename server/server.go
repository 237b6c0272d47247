// Package server is the HTTP front of `wsgi-wasm serve` and `run`: it
// loads every tenant of a folder (or the one tenant it is given), routes
// each request by Host and then by the longest path prefix, applies the
// front's rules and the tenant's policy (body limit, deadline, static
// files) and hands the request to the tenant's pool in the warm set
// (package pool); it keeps tenants' snapshots built and warmed up.
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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// Config is the server-wide configuration.
type Config struct {
	TenantDir string
	// Tenant, if set, is the one tenant served, given as is instead of
	// the folders of TenantDir (wsgi-wasm run); New fails if it does not
	// load, and DataDir is its data folder itself.
	Tenant  *tenants.Tenant
	Ceiling policies.Policy
	// MemoryBudget bounds the linear memory of all warm instances (bytes).
	MemoryBudget int64
	// DataDir holds each tenant's writable data folder (DataDir/<tenant>);
	// with Tenant, it is that tenant's data folder.
	DataDir string
	// ForwardedAllowIPs are the proxies whose X-Forwarded-For and
	// X-Forwarded-Proto are trusted (gunicorn's forwarded_allow_ips);
	// "*" trusts every peer. Others' forwarded headers are ignored.
	ForwardedAllowIPs []string
	// HostAssignments, if not nil, are the host patterns each tenant may
	// claim (the server config's [hosts]); see hosts.go.
	HostAssignments map[string][]string
	// AccessLog receives one line per request in gunicorn's format (see
	// AccessLog); nil writes none.
	AccessLog io.Writer
	Logger    *slog.Logger
	// Snapshots, if set, holds snapshots of tenants' initialised instances:
	// instances are restored from them (milliseconds instead of an import),
	// and the server opens or builds them in the background after each
	// load, one tenant at a time.
	Snapshots *sandbox.SnapshotStore
}

// Server routes requests to tenants. Create it with New; it is an
// http.Handler.
type Server struct {
	cfg    Config
	engine *sandbox.Engine
	warm   *pool.WarmSet
	log    *slog.Logger

	metrics  *metrics
	access   *AccessLog
	reloadMu sync.Mutex

	mu      sync.RWMutex
	routes  []route           // most specific first
	broken  map[string]string // host -> why its tenant failed to load
	tenants map[string]*loaded

	background context.Context // cancelled by Close
	cancel     context.CancelFunc
	builders   sync.WaitGroup
}

type loaded struct {
	key     string // warm-set key: the tenant's name and a hash of its version
	tenant  *tenants.Tenant
	app     sandbox.AppConfig
	pool    pool.Config
	guestLg hostabi.Logger
	// inFlight counts the requests routed to this version. Added under
	// Server.mu's read lock, so once a reload has swapped the routes no
	// request joins a retired version, and its pool closes after the last
	// one ends (see retire).
	inFlight sync.WaitGroup
	// warmedUp is set once the tenant's warm-up request (if any) was sent
	// to an instance of its snapshot, successful or not.
	warmedUp atomic.Bool
}

type route struct {
	host   string // exact, "*.suffix" or "*"
	prefix string
	name   string
}

// New loads the tenants of cfg.TenantDir. A tenant that fails to load is
// logged with its file, key and reason, and answers 503 for its hosts;
// the others serve.
func New(ctx context.Context, engine *sandbox.Engine, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	warm, err := pool.NewWarmSet(engine, cfg.MemoryBudget)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, engine: engine, warm: warm, log: cfg.Logger, access: NewAccessLog(cfg.AccessLog)}
	s.background, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	if err := s.load(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
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
			s.log.Error("tenant reload failed; the previous version keeps serving", "tenant", name, "err", err)
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
			s.log.Error("tenant not loaded", "tenant", e.Name(), "err", err)
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
			s.log.Error("tenant not loaded", "tenant", t.Name, "err", err)
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
			s.log.Error("tenant reload refused; the previous version keeps serving", "tenant", name, "err", refused[name])
			loadedTenants[name] = old
			continue
		}
		s.log.Error("tenant not loaded", "tenant", name, "err", refused[name])
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
			go s.retire(name, old)
		}
	}
	s.maintainSnapshots(loadedTenants)
	return nil
}

// compileTimeout bounds compiling a tenant's sources to .pyc (Django and
// its dependencies take seconds); a tenant whose compile does not end by
// then is not loaded.
const compileTimeout = 2 * time.Minute

// snapshotBuilders is how many tenants' snapshots are built at once.
const snapshotBuilders = 2

// retire closes a version that is no longer routed once the requests routed
// to it have ended, so that they finish on the old version (none of them
// finds its pool closed) while new ones reach the new version. A version
// that became current again meanwhile (an edit undone) is kept.
func (s *Server) retire(name string, old *loaded) {
	old.inFlight.Wait()
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

// prepare compiles the tenant's code and derives its runtime config.
func (s *Server) prepare(ctx context.Context, t *tenants.Tenant) (*loaded, error) {
	cctx, cancel := context.WithTimeout(ctx, compileTimeout)
	defer cancel()
	pyc, err := s.engine.CompileApp(cctx, t.Dir, uint64(t.Policy.MemoryMB)<<20)
	if err != nil {
		return nil, err
	}
	log := s.log.With("tenant", t.Name)
	guestLog := NewTenantLog(log)
	app := sandbox.AppConfig{
		App: t.App, Dir: t.Dir, Env: t.Env, PycacheDir: pyc, Log: guestLog,
		MemoryLimit: uint64(t.Policy.MemoryMB) << 20,
	}
	if t.Policy.WritableData {
		if s.cfg.DataDir == "" {
			return nil, errors.New("server: tenant wants a writable data folder but the server has no --data-dir")
		}
		app.DataDir = filepath.Join(s.cfg.DataDir, t.Name)
		if s.cfg.Tenant != nil {
			app.DataDir = s.cfg.DataDir
		}
		app.DataMaxBytes = int64(t.Policy.DataMaxMB) << 20
		if err := os.MkdirAll(app.DataDir, 0o750); err != nil {
			return nil, err
		}
	}
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
		InitTimeout: initTimeout(t.Policy),
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

// hostRank orders exact hosts before wildcards before the catch-all, and
// longer wildcards before shorter ones.
func hostRank(h string) int {
	switch {
	case h == "*":
		return 0
	case strings.HasPrefix(h, "*."):
		return 1 + len(h)
	default:
		return 1 << 20
	}
}

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:])
	default:
		return pattern == host
	}
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

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	tenant := s.serve(sw, r)
	// The instance (if any) is back in its pool: what the app left unread
	// is drained here (full duplex needs the body closed, see
	// pool.ServeInstance), by the read deadline.
	FinishBody(r)
	client := ""
	if tenant != "-" {
		client = s.requestInfo(r, "").RemoteAddr
	}
	s.access.Log(r, client, tenant, sw.status, sw.bytes, time.Since(start))
}

// serve answers r and returns the name of the tenant that matched, or "-".
func (s *Server) serve(w *statusWriter, r *http.Request) string {
	if !CheckRequest(w, r) {
		return "-"
	}
	host := r.Host // normalised by CheckRequest
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	s.mu.RLock()
	var match *route
	for i := range s.routes {
		rt := &s.routes[i]
		if hostMatches(rt.host, host) && tenants.PathUnder(r.URL.Path, rt.prefix) {
			match = rt
			break
		}
	}
	why, broken := s.broken[host]
	var l *loaded
	if match != nil && !(broken && match.host != host) {
		l = s.tenants[match.name]
		l.inFlight.Add(1)
	}
	s.mu.RUnlock()
	if l == nil {
		if broken {
			s.log.Warn("request for a tenant that failed to load", "host", host, "why", why)
			w.Header().Set("Retry-After", "5")
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
			return "-"
		}
		http.NotFound(w, r)
		return "-"
	}
	defer l.inFlight.Done()
	// The body (and what net/http drains of it after the answer) is read
	// by the tenant's deadline at the latest, so a stalled client cannot
	// hold the connection past it.
	if d := l.tenant.Policy.RequestTimeout; d > 0 {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	}
	if len(l.tenant.Static) > 0 && serveStatic(w, r, l.tenant.Dir, match.prefix, l.tenant.Static) {
		return match.name
	}
	// The policy's limit as it reads: 0 takes no body at all.
	if r.ContentLength > l.tenant.Policy.MaxBodyBytes {
		pool.Fail(w, pool.ErrBodyTooLarge)
		return match.name
	}
	// The net/http writer itself, so that passing the limit also ends the
	// connection after the reply.
	r.Body = http.MaxBytesReader(w.ResponseWriter, r.Body, l.tenant.Policy.MaxBodyBytes)
	start := time.Now()
	inFlight := s.metrics.inFlight.WithLabelValues(match.name)
	inFlight.Inc()
	o := s.warm.Serve(l.key, l.app, l.pool, w, r, s.requestInfo(r, match.prefix), l.guestLg)
	if o.ClientError != nil {
		s.log.Warn("request body incomplete (the client's error; a failing app's answer became 400)", "tenant", match.name, "err", o.ClientError)
	}
	inFlight.Dec()
	s.metrics.observe(match.name, w.status, time.Since(start), o)
	return match.name
}

// Close closes every tenant's instances.
func (s *Server) Close() {
	s.cancel()
	s.builders.Wait()
	s.warm.Close()
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines, full duplex).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestInfo says how the client reached us: the scheme and peer address,
// from X-Forwarded-* only when the direct peer is a trusted proxy.
func (s *Server) requestInfo(r *http.Request, scriptName string) pool.RequestInfo {
	info := pool.RequestInfo{ScriptName: scriptName, Scheme: "http"}
	if r.TLS != nil {
		info.Scheme = "https"
	}
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || !s.trusted(peer) {
		return info
	}
	if fwd := r.Header.Get("X-Forwarded-For"); fwd != "" {
		client := strings.TrimSpace(strings.Split(fwd, ",")[0])
		if ip := net.ParseIP(client); ip != nil {
			info.RemoteAddr = net.JoinHostPort(ip.String(), "0")
		}
	}
	switch strings.ToLower(r.Header.Get("X-Forwarded-Proto")) {
	case "https":
		info.Scheme = "https"
	case "http":
		info.Scheme = "http"
	}
	return info
}

func (s *Server) trusted(peer string) bool {
	for _, a := range s.cfg.ForwardedAllowIPs {
		if a == "*" || a == peer {
			return true
		}
	}
	return false
}
