package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// runCommand serves one app folder, like `gunicorn module:app`.
func runCommand(logger *slog.Logger) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "serve one app folder over HTTP, like gunicorn MODULE:CALLABLE",
		ArgsUsage: "DIR MODULE:CALLABLE",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "bind", Aliases: []string{"b"}, Value: "127.0.0.1:8000", Usage: "listen on `ADDRESS`", EnvVars: []string{"WSGI_WASM_BIND"}},
			&cli.IntFlag{Name: "workers", Aliases: []string{"w"}, Value: 2, Usage: "maximum instances (each serves one request at a time)", EnvVars: []string{"WSGI_WASM_WORKERS"}},
			&cli.IntFlag{Name: "min-warm", Value: 1, Usage: "instances kept initialised and idle", EnvVars: []string{"WSGI_WASM_MIN_WARM"}},
			&cli.DurationFlag{Name: "timeout", Aliases: []string{"t"}, Value: 30 * time.Second, Usage: "per-request deadline in the guest", EnvVars: []string{"WSGI_WASM_TIMEOUT"}},
			&cli.IntFlag{Name: "max-requests", Value: 0, Usage: "replace an instance after this many requests (0: never)", EnvVars: []string{"WSGI_WASM_MAX_REQUESTS"}},
			&cli.IntFlag{Name: "max-requests-jitter", Value: 0, Usage: "random extra requests before replacement", EnvVars: []string{"WSGI_WASM_MAX_REQUESTS_JITTER"}},
			&cli.IntFlag{Name: "backlog", Value: 64, Usage: "requests that may wait for an instance; more get 503", EnvVars: []string{"WSGI_WASM_BACKLOG"}},
			&cli.StringFlag{Name: "data-dir", Usage: "writable `FOLDER` for the app, mounted at /data ($WSGI_WASM_DATA_DIR in the app); requests are then served one at a time", EnvVars: []string{"WSGI_WASM_DATA_DIR"}},
			&cli.Uint64Flag{Name: "memory-mb", Value: sandbox.DefaultMemoryLimit >> 20, Usage: "linear memory cap of each instance in MiB", EnvVars: []string{"WSGI_WASM_MEMORY_MB"}},
		}, append(httpFlags(), snapshotFlags()...)...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("run: want DIR MODULE:CALLABLE, got %d arguments", c.NArg())
			}
			dir, err := filepath.Abs(c.Args().Get(0))
			if err != nil {
				return err
			}
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("run: %s is not a folder", dir)
			}
			access, closeAccess, err := openAccessLog(c.String("access-logfile"))
			if err != nil {
				return err
			}
			defer closeAccess()
			eng, err := newEngine(c.Context, c.String("python-dir"), c.String("cache-dir"), logger)
			if err != nil {
				return err
			}
			defer eng.Close(context.Background())
			// The same rate limit as serve's tenants.
			guestLog := server.NewTenantLog(logger.With("app", c.Args().Get(1)))
			pycache, err := eng.CompileApp(c.Context, dir, 0)
			if err != nil {
				return err
			}
			dataDir := c.String("data-dir")
			if dataDir != "" {
				if dataDir, err = filepath.Abs(dataDir); err != nil {
					return err
				}
				if err := os.MkdirAll(dataDir, 0o755); err != nil {
					return err
				}
			}
			store, err := openSnapshotStore(c.Bool("snapshots"), c.Bool("snapshot-base"), c.String("snapshot-dir"), c.String("cache-dir"), dir)
			if err != nil {
				return err
			}
			appCfg := sandbox.AppConfig{
				App: c.Args().Get(1), Dir: dir, DataDir: dataDir, PycacheDir: pycache, Log: guestLog,
				MemoryLimit: c.Uint64("memory-mb") << 20,
			}
			snapKey := ""
			if store != nil {
				defer store.Close()
				// The app's folder has one snapshot: that of this version.
				if snapKey, err = eng.SnapshotKey(c.Context, appCfg); err != nil {
					return err
				}
				if err := store.Retain(map[string]bool{snapKey: true}); err != nil {
					logger.Warn("removing old snapshots", "err", err)
				}
			}
			p := pool.New(eng, appCfg, pool.Config{
				MinWarm: c.Int("min-warm"), MaxInstances: c.Int("workers"), RequestTimeout: c.Duration("timeout"),
				MaxRequests: c.Int("max-requests"), MaxRequestsJitter: c.Int("max-requests-jitter"), QueueLength: c.Int("backlog"),
				Snapshots: store, SnapshotKey: snapKey,
			})
			defer p.Close()
			app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// serve's HTTP rules, then the body read bounded by the
				// request's deadline, as serve's Server does for a tenant.
				if !server.CheckRequest(w, r) {
					return
				}
				http.NewResponseController(w).SetReadDeadline(time.Now().Add(c.Duration("timeout")))
				o := p.Serve(w, r, pool.RequestInfo{}, guestLog)
				server.FinishBody(r)
				if o.ClientError != nil {
					logger.Warn("request body incomplete (the client's error; a failing app's answer became 400)", "err", o.ClientError)
				}
			})
			srv := newHTTPServer(server.NewAccessLog(access).Handler(filepath.Base(dir), app), httpTimeouts{
				readHeader: c.Duration("read-header-timeout"), idle: c.Duration("idle-timeout"), write: c.Duration("write-timeout"),
			})
			caps := &server.ConnLimits{Max: c.Int("max-connections"), MaxPerIP: c.Int("max-connections-per-ip"), Logger: logger}
			ln, err := frontListener(c.String("bind"), caps, "", "")
			if err != nil {
				return err
			}
			logger.Info("serving", "dir", dir, "app", c.Args().Get(1), "bind", ln.Addr().String(), "workers", c.Int("workers"))
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-c.Context.Done():
			}
			logger.Info("shutting down: draining in-flight requests")
			ctx, cancel := context.WithTimeout(context.Background(), c.Duration("timeout")+5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
}
