package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// snapshotFlags are serve's and run's: snapshots on by default, each a
// whole image of its own unless --snapshot-base, and where they live.
func snapshotFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "snapshots", Value: true, Usage: "restore instances from snapshots of the initialised app (milliseconds instead of the app's import); --snapshots=false starts every instance fresh", EnvVars: []string{"WSGI_WASM_SNAPSHOTS"}},
		&cli.BoolFlag{Name: "snapshot-base", Usage: "make tenants' snapshots from one base image of the interpreter and standard library, so that they store and map only what differs from it (smaller files, faster builds; slower restores, one string-hash secret for the tenants on a base); off, each tenant's snapshot is a whole image with a secret of its own, and those made from a base are rebuilt", EnvVars: []string{"WSGI_WASM_SNAPSHOT_BASE"}},
		&cli.StringFlag{Name: "snapshot-dir", Usage: "`FOLDER` of snapshot files, one server's own (default: $XDG_CACHE_HOME/wsgi-wasm/snapshots/<hash of the tenant folder's path>)", EnvVars: []string{"WSGI_WASM_SNAPSHOT_DIR"}},
	}
}

// openSnapshotStore opens the snapshot folder dir (default: the one of the
// tenants below root, beside cacheDir), or returns nil when snapshots are
// off. With base, tenants' snapshots are made from a shared base image.
func openSnapshotStore(on, base bool, dir, cacheDir, root string) (*sandbox.SnapshotStore, error) {
	if !on {
		return nil, nil
	}
	if dir == "" {
		dir = sandbox.DefaultSnapshotDir(cacheDir, root)
	}
	var opts []sandbox.StoreOption
	if base {
		opts = append(opts, sandbox.WithSharedBase())
	}
	return sandbox.NewSnapshotStore(dir, opts...)
}

// snapshotCommand builds the snapshots that serve would build in the
// background, ahead of time (e.g. in a deployment step).
func snapshotCommand(logger *slog.Logger, exitCode *int) *cli.Command {
	return &cli.Command{
		Name:      "snapshot",
		Usage:     "build the snapshot of every tenant below DIR ahead of serving; exit 1 if any tenant cannot be snapshotted",
		ArgsUsage: "DIR",
		Flags: append(snapshotFlags()[1:],
			&cli.StringFlag{Name: "data-dir", Usage: "`FOLDER` for tenants' writable data folders, as given to serve", EnvVars: []string{"WSGI_WASM_DATA_DIR"}},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("snapshot: want one DIR (a folder of tenant folders, as serve --tenant-dir takes)")
			}
			store, err := openSnapshotStore(true, c.Bool("snapshot-base"), c.String("snapshot-dir"), c.String("cache-dir"), c.Args().First())
			if err != nil {
				return err
			}
			defer store.Close()
			eng, err := newEngine(c.Context, c.String("python-dir"), c.String("cache-dir"), logger)
			if err != nil {
				return err
			}
			defer eng.Close(c.Context)
			srv, err := server.New(c.Context, eng, server.Config{
				TenantDir: c.Args().First(), Ceiling: policies.DefaultCeiling, DataDir: c.String("data-dir"),
				Logger: logger, Snapshots: store, MemoryBudget: 1 << 30,
			})
			if err != nil {
				return err
			}
			defer srv.Close()
			n, err := srv.BuildSnapshots(c.Context)
			fmt.Fprintf(c.App.Writer, "%d tenant(s) with a snapshot in %s\n", n, store.Dir())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				*exitCode = 1
			}
			return nil
		},
	}
}
