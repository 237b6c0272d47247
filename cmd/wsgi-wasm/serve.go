package main

import (
	"context"
	"errors"
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
)

// serveCommand serves every tenant of a folder, routed by Host.
func serveCommand(logger *slog.Logger) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve every tenant folder below --tenant-dir, routed by Host and path prefix",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tenant-dir", Required: true, Usage: "`FOLDER` holding one folder per tenant, each with a tenant.toml", EnvVars: []string{"WSGI_WASM_TENANT_DIR"}},
			&cli.StringSliceFlag{Name: "bind", Aliases: []string{"b"}, Value: cli.NewStringSlice("127.0.0.1:8000"), Usage: "listen on `ADDRESS` (repeatable)", EnvVars: []string{"WSGI_WASM_BIND"}},
			&cli.StringFlag{Name: "data-dir", Usage: "`FOLDER` for tenants' writable data folders (one per tenant, if their policy grants it)", EnvVars: []string{"WSGI_WASM_DATA_DIR"}},
			&cli.Int64Flag{Name: "memory-budget-mb", Value: 4096, Usage: "linear memory all warm instances may hold together; the least useful tenants are evicted beyond it", EnvVars: []string{"WSGI_WASM_MEMORY_BUDGET_MB"}},
			&cli.StringSliceFlag{Name: "forwarded-allow-ips", Value: cli.NewStringSlice("127.0.0.1", "::1"), Usage: "proxy `IP`s whose X-Forwarded-For/-Proto are trusted (\"*\" for all)", EnvVars: []string{"WSGI_WASM_FORWARDED_ALLOW_IPS"}},
			&cli.StringFlag{Name: "certfile", Usage: "TLS certificate `FILE` (PEM); with --keyfile, serve HTTPS", EnvVars: []string{"WSGI_WASM_CERTFILE"}},
			&cli.StringFlag{Name: "keyfile", Usage: "TLS key `FILE` (PEM)", EnvVars: []string{"WSGI_WASM_KEYFILE"}},
			&cli.StringFlag{Name: "admin-bind", Value: "127.0.0.1:9090", Usage: "listen on `ADDRESS` for /metrics, /livez and /readyz (empty: off)", EnvVars: []string{"WSGI_WASM_ADMIN_BIND"}},
			&cli.BoolFlag{Name: "pprof", Usage: "also serve Go's profiler (net/http/pprof) at /debug/pprof/ on the admin listener; off by default, as it exposes internals", EnvVars: []string{"WSGI_WASM_PPROF"}},
			&cli.DurationFlag{Name: "graceful-timeout", Value: 30 * time.Second, Usage: "how long SIGTERM waits for requests in flight", EnvVars: []string{"WSGI_WASM_GRACEFUL_TIMEOUT"}},
		},
		Action: func(c *cli.Context) error {
			eng, err := newEngine(c, logger)
			if err != nil {
				return err
			}
			defer eng.Close(context.Background())
			srv, err := server.New(c.Context, eng, server.Config{
				TenantDir: c.String("tenant-dir"), Ceiling: policies.DefaultCeiling, DataDir: c.String("data-dir"),
				MemoryBudget: c.Int64("memory-budget-mb") << 20, Logger: logger,
				ForwardedAllowIPs: c.StringSlice("forwarded-allow-ips"),
			})
			if err != nil {
				return err
			}
			defer srv.Close()
			hs := newHTTPServer(srv)
			g, ctx := errgroup.WithContext(c.Context)
			for _, addr := range c.StringSlice("bind") {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return err
				}
				logger.Info("serving", "bind", ln.Addr().String(), "tenant_dir", c.String("tenant-dir"))
				cert, key := c.String("certfile"), c.String("keyfile")
				g.Go(func() error {
					var err error
					if cert != "" || key != "" {
						err = hs.ServeTLS(ln, cert, key)
					} else {
						err = hs.Serve(ln)
					}
					if !errors.Is(err, http.ErrServerClosed) {
						return err
					}
					return nil
				})
			}
			var admin *http.Server
			if addr := c.String("admin-bind"); addr != "" {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return err
				}
				handler, paths := srv.AdminHandler(), "/metrics /livez /readyz"
				if c.Bool("pprof") {
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
				sctx, cancel := context.WithTimeout(context.Background(), c.Duration("graceful-timeout"))
				defer cancel()
				return hs.Shutdown(sctx)
			})
			return g.Wait()
		},
	}
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
