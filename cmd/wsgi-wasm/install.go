package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/deps"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// installTimeout bounds one pip run in the sandbox.
const installTimeout = 15 * time.Minute

// installCommand fills a tenant's site-packages/ from its requirements file
// and folders of wheels, by pip in the sandbox (package deps).
func installCommand(logger *slog.Logger) *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "fill TENANT_DIR/site-packages from its requirements.txt (or pyproject.toml [project] dependencies) and folders of wheels, by pip in the sandbox; pure-Python only",
		ArgsUsage: "TENANT_DIR",
		Description: "No package index is used: every distribution comes from a --find-links folder. " +
			"The new site-packages replaces the old one only once the install worked. " +
			"A package that ships only compiled wheels or modules is refused, naming it; " +
			"compiled modules next to a pure-Python fallback are dropped, with a note.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "find-links", Aliases: []string{"f"}, Usage: "a `FOLDER` of wheels to install from (repeatable)", EnvVars: []string{"WSGI_WASM_FIND_LINKS"}},
			&cli.StringFlag{Name: "requirement", Aliases: []string{"r"}, Usage: "install from this requirements `FILE` instead of the tenant's requirements.txt or pyproject.toml"},
			&cli.StringFlag{Name: "pip-wheel", Usage: "pip's wheel `FILE` (default: from Debian's python3-pip-whl, fetched once into the cache folder)", EnvVars: []string{"WSGI_WASM_PIP_WHEEL"}},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show pip's output as it runs"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("install: want one TENANT_DIR")
			}
			pip := c.String("pip-wheel")
			if pip == "" {
				cache := os.Getenv("WSGI_WASM_CACHE")
				if cache == "" {
					cache = filepath.Dir(sandbox.DefaultCacheDir())
				}
				var err error
				if pip, err = deps.PipWheel(filepath.Join(cache, "debs")); err != nil {
					return err
				}
			}
			eng, err := newEngine(c.Context, c.String("python-dir"), c.String("cache-dir"), logger)
			if err != nil {
				return err
			}
			defer eng.Close(c.Context)
			ctx, cancel := context.WithTimeout(c.Context, installTimeout)
			defer cancel()
			o := deps.Options{Tenant: c.Args().First(), Requirements: c.String("requirement"), FindLinks: c.StringSlice("find-links"), PipWheel: pip, Run: eng.RunCommand}
			if c.Bool("verbose") {
				o.Output = os.Stderr
			}
			start := time.Now()
			res, err := deps.Install(ctx, o)
			if err != nil {
				return err
			}
			for _, n := range res.Notes {
				fmt.Fprintln(c.App.Writer, "note:", n)
			}
			fmt.Fprintf(c.App.Writer, "installed into %s in %v: %s\n", filepath.Join(o.Tenant, deps.SitePackages),
				time.Since(start).Round(100*time.Millisecond), strings.Join(res.Distributions, " "))
			return nil
		},
	}
}
