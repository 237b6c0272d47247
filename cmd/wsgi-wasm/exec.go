package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
	"github.com/wsgi-wasm/wsgi-wasm/serverconfig"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// execCommand runs a command (manage.py migrate, flask init-db) in a
// tenant's own sandbox, laid out as serve lays it out, holding the lock of
// its data folder that every exec of the tenant takes (serve's requests run
// beside it: SQLite's own locks exclude writers, sandbox/README.md).
func execCommand(logger *slog.Logger, exitCode *int) *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a tenant's sandbox as serve lays it out (manage.py migrate, flask init-db), one exec of a tenant at a time, with its outbound rules",
		ArgsUsage: "[--env K=V]... [TENANT_DIR] -- ARGS...",
		Description: "ARGS are what follows python: a script of the tenant's folder (manage.py ...), -m MODULE, -c CODE, " +
			"or a console script of its site-packages (flask ...). The guest's exit code is the command's.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "server config `FILE` (TOML): its tenant_dir, data_dir, python_dir, cache_dir, outbound_ca_file and [ceiling]", EnvVars: []string{"WSGI_WASM_CONFIG"}},
			&cli.StringFlag{Name: "tenant-dir", Usage: "`FOLDER` of the tenants, with --tenant", EnvVars: []string{"WSGI_WASM_TENANT_DIR"}},
			&cli.StringFlag{Name: "tenant", Usage: "the tenant `NAME`: its folder below --tenant-dir (instead of TENANT_DIR)"},
			&cli.StringFlag{Name: "data-dir", Usage: "`FOLDER` of the tenants' data folders, as serve's --data-dir", EnvVars: []string{"WSGI_WASM_DATA_DIR"}},
			&cli.GenericFlag{Name: "env", Value: &keyValues{}, Usage: "also set `KEY=VALUE` in the guest, over the tenant's [env] (repeatable; DJANGO_SUPERUSER_PASSWORD for createsuperuser --noinput); a value may hold commas; the host environment is not passed"},
			&cli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "wait up to `DURATION` for the data folder's lock (another exec of the tenant holds it while it runs)", EnvVars: []string{"WSGI_WASM_EXEC_LOCK_WAIT"}},
		}, outboundFlags()...),
		Action: func(c *cli.Context) error {
			f := &serverconfig.File{Ceiling: policies.DefaultCeiling}
			if path := c.String("config"); path != "" {
				var err error
				if f, err = serverconfig.Read(path); err != nil {
					return err
				}
			}
			dir, args, err := execTarget(c, pick(c, "tenant-dir", f.TenantDir, c.String))
			if err != nil {
				return err
			}
			t, err := tenants.Load(dir, f.Ceiling)
			if err != nil {
				return err
			}
			app, err := server.TenantAppConfig(t, pick(c, "data-dir", f.DataDir, c.String), false)
			if err != nil {
				return fmt.Errorf("exec: %s: %w", t.Name, err)
			}
			// Outbound connections as serve makes them for the tenant's
			// instances: its rules and limits, the server's CA file;
			// refusals on standard error.
			roots, err := outboundRootCAs(pick(c, "outbound-ca-file", f.OutboundCAFile, c.String))
			if err != nil {
				return fmt.Errorf("exec: %w", err)
			}
			app.Outbound = server.TenantOutboundGate(t, roots, logger.With("tenant", t.Name), nil)
			eng, err := newEngine(c.Context, pick(c, "python-dir", f.PythonDir, c.String), pick(c, "cache-dir", f.CacheDir, c.String), logger)
			if err != nil {
				return err
			}
			defer eng.Close(context.Background())
			cctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
			app.PycacheDir, err = eng.CompileApp(cctx, t.Dir, app.MemoryLimit)
			cancel()
			if err != nil {
				return fmt.Errorf("exec: %s: %w", t.Name, err)
			}
			app.Log = func(_ slog.Level, msg []byte) { fmt.Fprintf(os.Stderr, "%s\n", msg) }
			if app.DataDir != "" {
				unlock, err := lockForExec(c.Context, eng.LockData, app.DataDir, c.Duration("lock-wait"), logger)
				if err != nil {
					return err
				}
				defer unlock()
			}
			code, err := eng.RunAppCommand(c.Context, app, args, sandbox.Command{
				Env: c.Generic("env").(*keyValues).pairs(), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
			*exitCode = code
			return err
		},
	}
}

// execTarget is the tenant's folder and the command: TENANT_DIR -- ARGS,
// or --tenant NAME (below tenantDir) -- ARGS.
func execTarget(c *cli.Context, tenantDir string) (string, []string, error) {
	args := c.Args().Slice()
	if name := c.String("tenant"); name != "" {
		if tenantDir == "" {
			return "", nil, errors.New("exec: --tenant needs --tenant-dir (or tenant_dir in the --config file)")
		}
		if name != filepath.Base(name) || name == "." || name == ".." {
			return "", nil, fmt.Errorf("exec: --tenant %q: want a folder name", name)
		}
		return filepath.Join(tenantDir, name), dropDashes(args), nil
	}
	if len(args) < 2 || len(dropDashes(args[1:])) == 0 {
		return "", nil, errors.New("exec: want TENANT_DIR -- ARGS... (or --tenant NAME -- ARGS...)")
	}
	return args[0], dropDashes(args[1:]), nil
}

// dropDashes is args without the "--" before them that the command line
// keeps after a positional argument.
func dropDashes(args []string) []string {
	if len(args) > 0 && args[0] == "--" {
		return args[1:]
	}
	return args
}

// lockForExec takes the data folder's lock, waiting up to wait; a wait of
// over a second is said once.
func lockForExec(ctx context.Context, lock func(context.Context, string) (func(), error), dir string, wait time.Duration, logger *slog.Logger) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	said := time.AfterFunc(time.Second, func() {
		logger.Warn("waiting for the data folder's lock (another exec of the tenant runs)", "dir", dir, "wait", wait)
	})
	defer said.Stop()
	unlock, err := lock(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("exec: the data folder %s stayed locked for %v (another exec of the tenant runs): %w", dir, wait, err)
	}
	return unlock, nil
}
