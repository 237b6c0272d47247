package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// runCommand serves one app folder, like `gunicorn module:app`: a
// one-tenant configuration served by serve's server, so that a request
// gets the answer it would get from serve.
func runCommand(logger *slog.Logger) *cli.Command {
	return &cli.Command{
		Name:        "run",
		Usage:       "serve one app folder over HTTP, like gunicorn MODULE:CALLABLE",
		ArgsUsage:   "[DIR] MODULE:CALLABLE",
		Description: "DIR (default: --chdir, else the current folder) is mounted at /app. Flags may come before or after the arguments.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "bind", Aliases: []string{"b"}, Value: "127.0.0.1:8000", Usage: "listen on `ADDRESS`", EnvVars: []string{"WSGI_WASM_BIND"}},
			&cli.IntFlag{Name: "workers", Aliases: []string{"w"}, Value: 2, Usage: "maximum instances (each serves one request at a time)", EnvVars: []string{"WSGI_WASM_WORKERS"}},
			&cli.IntFlag{Name: "min-warm", Value: 1, Usage: "instances kept initialised and idle", EnvVars: []string{"WSGI_WASM_MIN_WARM"}},
			&cli.GenericFlag{Name: "timeout", Aliases: []string{"t"}, Value: &seconds{30 * time.Second}, Usage: "per-request deadline from the request's arrival, in seconds as gunicorn takes it (`30`) or a duration (`1m30s`)", EnvVars: []string{"WSGI_WASM_TIMEOUT"}},
			&cli.StringSliceFlag{Name: "pythonpath", Usage: "`FOLDERS` of DIR, comma-separated (or repeated), put first on sys.path in this order (gunicorn's --pythonpath)", EnvVars: []string{"WSGI_WASM_PYTHONPATH"}},
			&cli.StringFlag{Name: "chdir", Usage: "the app `FOLDER` when DIR is not given (gunicorn's --chdir)", EnvVars: []string{"WSGI_WASM_CHDIR"}},
			&cli.GenericFlag{Name: "env", Aliases: []string{"e"}, Value: &keyValues{}, Usage: "`KEY=VALUE` in the app's environment (repeatable), as tenant.toml's [env]"},
			&cli.BoolFlag{Name: "reload", Usage: "serve the new code when a file in DIR changes (for development)", EnvVars: []string{"WSGI_WASM_RELOAD"}},
			&cli.StringSliceFlag{Name: "outbound", Usage: "`HOST:PORT` the app may connect to (repeatable), as tenant.toml's [policy] outbound", EnvVars: []string{"WSGI_WASM_OUTBOUND"}},
			&cli.IntFlag{Name: "max-requests", Value: 0, Usage: "replace an instance after this many requests (0: never)", EnvVars: []string{"WSGI_WASM_MAX_REQUESTS"}},
			&cli.IntFlag{Name: "max-requests-jitter", Value: 0, Usage: "random extra requests before replacement", EnvVars: []string{"WSGI_WASM_MAX_REQUESTS_JITTER"}},
			&cli.IntFlag{Name: "backlog", Value: 64, Usage: "requests that may wait for an instance; more get 503 (0: none wait)", EnvVars: []string{"WSGI_WASM_BACKLOG"}},
			&cli.Int64Flag{Name: "max-body-bytes", Value: policies.Presets["default"].MaxBodyBytes, Usage: "request body limit in `BYTES`; over it, 413 (0: no body accepted)", EnvVars: []string{"WSGI_WASM_MAX_BODY_BYTES"}},
			&cli.StringSliceFlag{Name: "static", Usage: "`PREFIX=FOLDER`: serve the URL prefix from a folder of DIR without Python (repeatable), as tenant.toml's [static]", EnvVars: []string{"WSGI_WASM_STATIC"}},
			&cli.StringFlag{Name: "data-dir", Usage: "writable `FOLDER` for the app, mounted at /data ($WSGI_WASM_DATA_DIR in the app)", EnvVars: []string{"WSGI_WASM_DATA_DIR"}},
			&cli.Uint64Flag{Name: "memory-mb", Value: sandbox.DefaultMemoryLimit >> 20, Usage: "linear memory cap of each instance in MiB", EnvVars: []string{"WSGI_WASM_MEMORY_MB"}},
		}, frontFlags()...),
		Action: func(c *cli.Context) error {
			t, dataDir, err := runTenant(c)
			if err != nil {
				return err
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
			store, err := openSnapshotStore(c.Bool("snapshots"), c.Bool("snapshot-base"), c.String("snapshot-dir"), c.String("cache-dir"), t.Dir)
			if err != nil {
				return err
			}
			if store != nil {
				defer store.Close()
			}
			// The app's folder has one snapshot: that of this version (the
			// server retains its tenant's only).
			roots, err := outboundRootCAs(c.String("outbound-ca-file"))
			if err != nil {
				return err
			}
			srv, err := server.New(c.Context, eng, server.Config{
				Tenant: t, DataDir: dataDir, MemoryBudget: runMemoryBudget, Logger: logger,
				ForwardedAllowIPs: c.StringSlice("forwarded-allow-ips"), AccessLog: access, Snapshots: store,
				OutboundRootCAs: roots, CheckIns: frontPoller(),
			})
			if err != nil {
				return err
			}
			defer srv.Close()
			hs := newHTTPServer(srv, httpTimeouts{
				readHeader: c.Duration("read-header-timeout"), idle: c.Duration("idle-timeout"), write: c.Duration("write-timeout"),
			})
			caps := &server.ConnLimits{Max: c.Int("max-connections"), MaxPerIP: c.Int("max-connections-per-ip"), ExemptIPs: c.StringSlice("forwarded-allow-ips"), Logger: logger}
			ln, err := frontListener(c.String("bind"), caps, "", "")
			if err != nil {
				return err
			}
			logger.Info("serving", "dir", t.Dir, "app", t.App, "bind", ln.Addr().String(), "workers", t.Policy.MaxInstances)
			errc := make(chan error, 2)
			go func() { errc <- hs.Serve(ln) }()
			if c.Bool("reload") {
				go func() {
					if err := srv.Watch(c.Context, nil); err != nil {
						errc <- err
					}
				}()
			}
			select {
			case err := <-errc:
				return err
			case <-c.Context.Done():
			}
			logger.Info("shutting down: draining in-flight requests")
			ctx, cancel := context.WithTimeout(context.Background(), t.Policy.RequestTimeout+5*time.Second)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
}

// runMemoryBudget is the warm set's budget for run's one tenant: its
// instances are bounded by --workers, never evicted.
const runMemoryBudget = 1 << 50

// runTenant is the one tenant that run's flags and arguments describe,
// answering every host, and its data folder ("" for none).
func runTenant(c *cli.Context) (*tenants.Tenant, string, error) {
	dir, app := c.String("chdir"), c.Args().Get(0)
	switch {
	case c.NArg() == 2 && dir != "":
		return nil, "", errors.New("run: give the app folder as DIR or as --chdir, not both")
	case c.NArg() == 2:
		dir, app = c.Args().Get(0), c.Args().Get(1)
	case c.NArg() != 1:
		return nil, "", fmt.Errorf("run: want [DIR] MODULE:CALLABLE, got %d arguments", c.NArg())
	case dir == "":
		dir = "."
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, "", fmt.Errorf("run: %s is not a folder", dir)
	}
	static := map[string]string{}
	for _, m := range c.StringSlice("static") {
		prefix, folder, ok := strings.Cut(m, "=")
		clean := filepath.Clean(folder)
		if !ok || !strings.HasPrefix(prefix, "/") || folder == "" || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, "", fmt.Errorf("run: --static %q: want /PREFIX=FOLDER, the folder inside DIR", m)
		}
		static[prefix] = folder
	}
	pythonPath, err := folderArgs(dir, c.StringSlice("pythonpath"))
	if err != nil {
		return nil, "", err
	}
	timeout := c.Generic("timeout").(*seconds).Duration
	if c.Int("workers") < 1 || c.Int("backlog") < 0 || c.Int64("max-body-bytes") < 0 || timeout <= 0 {
		return nil, "", errors.New("run: --workers must be at least 1, --timeout more than 0, --backlog and --max-body-bytes not negative")
	}
	dataDir := c.String("data-dir")
	if dataDir != "" {
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, "", err
		}
	}
	rules, err := policies.ParseRules(c.StringSlice("outbound"))
	if err != nil {
		return nil, "", fmt.Errorf("run: --outbound%w", err)
	}
	env := c.Generic("env").(*keyValues).m
	def := policies.Presets["default"]
	t := &tenants.Tenant{
		Name: filepath.Base(dir), Dir: dir, App: app, Hosts: []string{"*"}, Static: static, Env: env, PythonPath: pythonPath,
		Policy: policies.Policy{
			RequestTimeout: timeout, MemoryMB: int(c.Uint64("memory-mb")), MaxBodyBytes: c.Int64("max-body-bytes"),
			MaxInstances: c.Int("workers"), QueueLength: c.Int("backlog"), WritableData: dataDir != "",
			Outbound: rules, OutboundConnections: def.OutboundConnections, OutboundConnectTimeout: def.OutboundConnectTimeout,
			OutboundTenantConns: def.OutboundConnections * c.Int("workers"),
		},
		Pool: tenants.Pool{MinWarm: c.Int("min-warm"), MaxRequests: c.Int("max-requests"), MaxRequestsJitter: c.Int("max-requests-jitter")},
	}
	return t, dataDir, nil
}

// folderArgs checks run's --pythonpath folders: each relative to dir and
// inside it (the guest sees nothing else), an existing folder and no link,
// returned cleaned and slash-separated.
func folderArgs(dir string, folders []string) ([]string, error) {
	var out []string
	for _, f := range folders {
		clean, err := tenants.FolderInside(dir, f)
		if err != nil {
			return nil, fmt.Errorf("run: --pythonpath %w", err)
		}
		out = append(out, clean)
	}
	return out, nil
}

// seconds is run's --timeout: a whole number of seconds, as gunicorn's
// --timeout, or a Go duration.
type seconds struct{ time.Duration }

func (s *seconds) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		s.Duration = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither seconds (30) nor a duration (1m30s)", v)
	}
	s.Duration = d
	return nil
}

func (s *seconds) String() string { return s.Duration.String() }

// keyValues is a repeatable KEY=VALUE flag of environment variables (run,
// exec and python's --env); a value may hold commas.
type keyValues struct{ m map[string]string }

func (kv *keyValues) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	if !tenants.ValidEnvName(k) {
		return fmt.Errorf("%q: %s is not an environment variable name", v, k)
	}
	if kv.m == nil {
		kv.m = map[string]string{}
	}
	kv.m[k] = val
	return nil
}

// pairs are the values as KEY=VALUE, sorted by key.
func (kv *keyValues) pairs() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(kv.m)) {
		out = append(out, k+"="+kv.m[k])
	}
	return out
}

func (kv *keyValues) String() string {
	var b []string
	for k, v := range kv.m {
		b = append(b, k+"="+v)
	}
	return strings.Join(b, " ")
}
