package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/server"
	"github.com/wsgi-wasm/wsgi-wasm/serverconfig"
)

// serveCommand serves every tenant of a folder, routed by Host.
func serveCommand(logger *slog.Logger) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve every tenant folder below --tenant-dir, routed by Host and path prefix",
		Description: "Settings come from the flags, then their environment variables, then the --config file, " +
			"then the defaults shown. SIGHUP or a changed tenant file reloads the tenants; SIGTERM drains and exits.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "server config `FILE` (TOML); flags and environment variables override it", EnvVars: []string{"WSGI_WASM_CONFIG"}},
			&cli.StringFlag{Name: "tenant-dir", Usage: "`FOLDER` holding one folder per tenant, each with a tenant.toml (required here or in the config file)", EnvVars: []string{"WSGI_WASM_TENANT_DIR"}},
			&cli.StringSliceFlag{Name: "bind", Aliases: []string{"b"}, Value: cli.NewStringSlice("127.0.0.1:8000"), Usage: "listen on `ADDRESS` (repeatable)", EnvVars: []string{"WSGI_WASM_BIND"}},
			&cli.StringFlag{Name: "data-dir", Usage: "`FOLDER` for tenants' writable data folders (one per tenant, if their policy grants it)", EnvVars: []string{"WSGI_WASM_DATA_DIR"}},
			&cli.Int64Flag{Name: "memory-budget-mb", Value: 4096, Usage: "`MIB` of RAM all warm instances may hold together (restored instances share their snapshot's pages); the least useful tenants are evicted beyond it", EnvVars: []string{"WSGI_WASM_MEMORY_BUDGET_MB"}},
			&cli.StringFlag{Name: "certfile", Usage: "TLS certificate `FILE` (PEM); with --keyfile, serve HTTPS", EnvVars: []string{"WSGI_WASM_CERTFILE"}},
			&cli.StringFlag{Name: "keyfile", Usage: "TLS key `FILE` (PEM)", EnvVars: []string{"WSGI_WASM_KEYFILE"}},
			&cli.StringFlag{Name: "admin-bind", Value: "127.0.0.1:9090", Usage: "listen on `ADDRESS` for /metrics, /livez and /readyz (empty: off)", EnvVars: []string{"WSGI_WASM_ADMIN_BIND"}},
			&cli.BoolFlag{Name: "pprof", Usage: "also serve Go's profiler (net/http/pprof) at /debug/pprof/ on the admin listener; off by default, as it exposes internals", EnvVars: []string{"WSGI_WASM_PPROF"}},
			&cli.StringFlag{Name: "tenant-log-dir", Usage: "`FOLDER` for a log file per tenant (<tenant>.log) to hand to its owner: its records, tracebacks on several lines, and why it did not load or start (empty: the server's log only)", EnvVars: []string{"WSGI_WASM_TENANT_LOG_DIR"}},
			&cli.Int64Flag{Name: "tenant-log-max-mb", Value: server.DefaultTenantLogMaxBytes >> 20, Usage: "a tenant's log file is rotated at `MIB` (the one before is kept as <tenant>.log.1)", EnvVars: []string{"WSGI_WASM_TENANT_LOG_MAX_MB"}},
			&cli.DurationFlag{Name: "pyc-retention", Value: 24 * time.Hour, Usage: "remove compiled code (.pyc) of tenant versions no longer served once unused for `DURATION`, after each load and hourly (0: keep everything)", EnvVars: []string{"WSGI_WASM_PYC_RETENTION"}},
			&cli.DurationFlag{Name: "graceful-timeout", Value: 30 * time.Second, Usage: "on SIGTERM, wait up to `DURATION` for requests in flight", EnvVars: []string{"WSGI_WASM_GRACEFUL_TIMEOUT"}},
		}, frontFlags()...),
		Action: func(c *cli.Context) error {
			s, err := serveSettingsOf(c)
			if err != nil {
				return err
			}
			return serve(c.Context, s, logger)
		},
	}
}

// serveSettings is what serve runs with, resolved by serveSettingsOf.
type serveSettings struct {
	configFile, tenantDir, dataDir, certFile, keyFile, adminBind, accessLog string
	tenantLogDir                                                            string
	tenantLogMaxMB                                                          int64
	pythonDir, cacheDir, snapshotDir, outboundCAFile                        string
	snapshots, snapshotBase, pprof                                          bool
	binds, forwardedAllowIPs                                                []string
	memoryBudgetMB                                                          int64
	maxConns, maxConnsPerIP                                                 int
	gracefulTimeout, pycRetention                                           time.Duration
	timeouts                                                                httpTimeouts
	ceiling                                                                 policies.Policy
	hosts                                                                   map[string][]string // the file's [hosts]; nil: none
}

// serveSettingsOf resolves each setting: a flag given on the command line
// or by its environment variable, else the config file's key, else the
// flag's default. The ceiling comes from the file only.
func serveSettingsOf(c *cli.Context) (serveSettings, error) {
	f := &serverconfig.File{Ceiling: policies.DefaultCeiling}
	if path := c.String("config"); path != "" {
		var err error
		if f, err = serverconfig.Read(path); err != nil {
			return serveSettings{}, err
		}
	}
	s := serveSettings{
		configFile:        f.Path,
		tenantDir:         pick(c, "tenant-dir", f.TenantDir, c.String),
		binds:             pick(c, "bind", f.Bind, c.StringSlice),
		dataDir:           pick(c, "data-dir", f.DataDir, c.String),
		memoryBudgetMB:    pick(c, "memory-budget-mb", f.MemoryBudgetMB, c.Int64),
		forwardedAllowIPs: pick(c, "forwarded-allow-ips", f.ForwardedAllowIPs, c.StringSlice),
		certFile:          pick(c, "certfile", f.CertFile, c.String),
		keyFile:           pick(c, "keyfile", f.KeyFile, c.String),
		adminBind:         pick(c, "admin-bind", f.AdminBind, c.String),
		accessLog:         pick(c, "access-logfile", f.AccessLogFile, c.String),
		pythonDir:         pick(c, "python-dir", f.PythonDir, c.String),
		cacheDir:          pick(c, "cache-dir", f.CacheDir, c.String),
		snapshots:         pick(c, "snapshots", f.Snapshots, c.Bool),
		snapshotBase:      pick(c, "snapshot-base", f.SnapshotBase, c.Bool),
		snapshotDir:       pick(c, "snapshot-dir", f.SnapshotDir, c.String),
		outboundCAFile:    pick(c, "outbound-ca-file", f.OutboundCAFile, c.String),
		gracefulTimeout:   pick(c, "graceful-timeout", f.GracefulTimeout, c.Duration),
		maxConns:          pick(c, "max-connections", f.MaxConnections, c.Int),
		maxConnsPerIP:     pick(c, "max-connections-per-ip", f.MaxConnectionsPerIP, c.Int),
		timeouts: httpTimeouts{
			readHeader: pick(c, "read-header-timeout", f.ReadHeaderTimeout, c.Duration),
			idle:       pick(c, "idle-timeout", f.IdleTimeout, c.Duration),
			write:      pick(c, "write-timeout", f.WriteTimeout, c.Duration),
		},
		ceiling: f.Ceiling, hosts: f.Hosts,
		pprof: c.Bool("pprof"), tenantLogDir: c.String("tenant-log-dir"), tenantLogMaxMB: c.Int64("tenant-log-max-mb"),
		pycRetention: c.Duration("pyc-retention"),
	}
	if s.pycRetention < 0 || (s.pycRetention > 0 && s.pycRetention < minPycRetention) {
		return serveSettings{}, fmt.Errorf("serve: --pyc-retention must be 0 (keep everything) or at least %v, not %v", minPycRetention, s.pycRetention)
	}
	if s.tenantLogMaxMB < 1 || s.tenantLogMaxMB > maxMemoryBudgetMB {
		return serveSettings{}, fmt.Errorf("serve: --tenant-log-max-mb must be from 1 to %d, not %d", maxMemoryBudgetMB, s.tenantLogMaxMB)
	}
	if s.tenantDir == "" {
		return serveSettings{}, errors.New("serve: no tenant folder: give --tenant-dir or tenant_dir in the --config file")
	}
	if s.maxConns < 0 || s.maxConnsPerIP < 0 {
		return serveSettings{}, fmt.Errorf("serve: --max-connections and --max-connections-per-ip cannot be negative (0 is no cap)")
	}
	if s.memoryBudgetMB <= 0 || s.memoryBudgetMB > maxMemoryBudgetMB {
		return serveSettings{}, fmt.Errorf("serve: --memory-budget-mb must be from 1 to %d, not %d", maxMemoryBudgetMB, s.memoryBudgetMB)
	}
	return s, nil
}

// minPycRetention is the shortest --pyc-retention: longer than the hour
// between two touches of the folders another server uses (server's
// pruneEvery), so that no server prunes what another still serves.
const minPycRetention = 2 * time.Hour

// maxMemoryBudgetMB (1 PiB) keeps the budget in bytes within an int64.
const maxMemoryBudgetMB = 1 << 30

// pick is the config file's value unless the flag was given (on the command
// line or by its environment variable) or the file lacks the key.
func pick[T any](c *cli.Context, flag string, fromFile *T, fromFlag func(string) T) T {
	if fromFile != nil && !c.IsSet(flag) {
		return *fromFile
	}
	return fromFlag(flag)
}

// serve runs the front until ctx ends, then drains.
func serve(ctx context.Context, s serveSettings, logger *slog.Logger) error {
	access, closeAccess, err := openAccessLog(s.accessLog)
	if err != nil {
		return err
	}
	defer closeAccess()
	store, err := openSnapshotStore(s.snapshots, s.snapshotBase, s.snapshotDir, s.cacheDir, s.tenantDir)
	if err != nil {
		return err
	}
	if store != nil {
		defer store.Close()
	}
	eng, err := newEngine(ctx, s.pythonDir, s.cacheDir, logger)
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	roots, err := outboundRootCAs(s.outboundCAFile)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, eng, server.Config{
		TenantDir: s.tenantDir, Ceiling: s.ceiling, HostAssignments: s.hosts, DataDir: s.dataDir,
		MemoryBudget: s.memoryBudgetMB << 20, Logger: logger,
		ForwardedAllowIPs: s.forwardedAllowIPs, AccessLog: access, Snapshots: store, OutboundRootCAs: roots, CheckIns: frontPoller(),
		TenantLogDir: s.tenantLogDir, TenantLogMaxBytes: s.tenantLogMaxMB << 20, PycRetention: s.pycRetention,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	hs := newHTTPServer(srv, s.timeouts)
	caps := &server.ConnLimits{Max: s.maxConns, MaxPerIP: s.maxConnsPerIP, ExemptIPs: s.forwardedAllowIPs, Logger: logger}
	g, ctx := errgroup.WithContext(ctx)
	for _, addr := range s.binds {
		ln, err := frontListener(addr, caps, s.certFile, s.keyFile)
		if err != nil {
			return err
		}
		logger.Info("serving", "bind", ln.Addr().String(), "tenant_dir", s.tenantDir, "config", s.configFile,
			"max_connections", s.maxConns, "max_connections_per_ip", s.maxConnsPerIP)
		g.Go(func() error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	var admin *http.Server
	if s.adminBind != "" {
		ln, err := net.Listen("tcp", s.adminBind)
		if err != nil {
			return err
		}
		handler, paths := srv.AdminHandler(), "/metrics /livez /readyz"
		if s.pprof {
			handler, paths = withPprof(handler), paths+" /debug/pprof/"
		}
		admin = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		logger.Info("admin listener", "bind", ln.Addr().String(), "paths", paths)
		g.Go(func() error {
			if err := admin.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error { return srv.Watch(ctx, hup) })
	g.Go(func() error {
		<-ctx.Done()
		if admin != nil {
			defer admin.Close()
		}
		logger.Info("shutting down: draining in-flight requests")
		sctx, cancel := context.WithTimeout(context.Background(), s.gracefulTimeout)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	return g.Wait()
}

// withPprof adds Go's profiler endpoints (/debug/pprof/...) to the admin
// handler, for `serve --pprof`.
func withPprof(admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", admin)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
