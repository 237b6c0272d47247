// Package server is the HTTP front of `wsgi-wasm serve` and `run`: it
// loads every tenant of a folder (or the one tenant it is given), routes
// each request by Host and then by the longest path prefix, applies the
// front's rules and the tenant's policy (body limit, deadline, static
// files) and hands the request to the tenant's pool in the warm set
// (package pool); it keeps tenants' snapshots built and warmed up.
package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/netyield"
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
	// TenantLogDir, if set, holds a log file per tenant,
	// <TenantLogDir>/<tenant>.log, for its owner: the tenant's records
	// (FormatTenantRecord: a traceback stays readable, on several lines)
	// and the server's own about it (it did not load, its reload failed).
	// Each is rotated at TenantLogMaxBytes (0: DefaultTenantLogMaxBytes),
	// keeping the file before it as <tenant>.log.1.
	TenantLogDir      string
	TenantLogMaxBytes int64
	// Snapshots, if set, holds snapshots of tenants' initialised instances:
	// instances are restored from them (milliseconds instead of an import),
	// and the server opens or builds them in the background after each
	// load, one tenant at a time.
	Snapshots *sandbox.SnapshotStore
	// PycRetention, if positive, prunes the .pyc cache after each load and
	// hourly: compiled code no loaded tenant version uses goes once idle
	// that long (serve's --pyc-retention); 0 keeps everything.
	PycRetention time.Duration
	// OutboundRootCAs verifies the servers tenants connect to over TLS
	// when a tenant loads no CA of its own; nil is the host's store.
	OutboundRootCAs *x509.CertPool
	// CheckIns, if set, is the poller the engine's guests check in with
	// (internal/netyield); its counts are exported as metrics.
	CheckIns *netyield.Poller
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
	files    *tenantFiles // nil without Config.TenantLogDir
	reloadMu sync.Mutex

	mu      sync.RWMutex
	routes  []route           // most specific first
	broken  map[string]string // host -> why its tenant failed to load
	tenants map[string]*loaded
	// retiring are the versions no longer routed whose requests in flight
	// have not all ended (retire).
	retiring map[*loaded]bool

	background context.Context // cancelled by Close
	cancel     context.CancelFunc
	builders   sync.WaitGroup

	watchMu sync.Mutex
	watches *watchSet // while Watch runs
}

type loaded struct {
	key     string // warm-set key: the tenant's name and a hash of its version
	tenant  *tenants.Tenant
	app     sandbox.AppConfig
	pool    pool.Config
	guestLg sandbox.GuestLog
	// inFlight counts the requests routed to this version. Added under
	// Server.mu's read lock, so once a reload has swapped the routes no
	// request joins a retired version, and its pool closes after the last
	// one ends (see retire).
	inFlight sync.WaitGroup
	// warmedUp is set once the tenant's warm-up request (if any) was sent
	// to an instance of its snapshot, successful or not.
	warmedUp atomic.Bool
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
	if cfg.TenantLogDir != "" {
		if err := os.MkdirAll(cfg.TenantLogDir, 0o750); err != nil {
			warm.Close()
			return nil, fmt.Errorf("server: tenant log folder: %w", err)
		}
		max := cfg.TenantLogMaxBytes
		if max <= 0 {
			max = DefaultTenantLogMaxBytes
		}
		s.files = &tenantFiles{dir: cfg.TenantLogDir, max: max, log: cfg.Logger, files: map[string]*RotatingFile{}}
	}
	if err := s.load(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.PycRetention > 0 {
		s.builders.Add(1)
		go s.prunePeriodically()
	}
	return s, nil
}

// Close closes every tenant's instances.
func (s *Server) Close() {
	s.cancel()
	s.builders.Wait()
	s.warm.Close()
	s.files.close()
}
