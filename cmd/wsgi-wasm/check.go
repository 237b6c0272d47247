package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/deps"
	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/serverconfig"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// checkImportTimeout bounds the import of each tenant's app by check, as
// serve bounds an instance's start.
const checkImportTimeout = time.Minute

// checkCommand validates a tenant folder or a tree of them without serving.
func checkCommand(logger *slog.Logger, exitCode *int) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a tenant folder, or every tenant folder below DIR, without serving; exit 1 on any error",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "check against the ceiling of this server config `FILE`", EnvVars: []string{"WSGI_WASM_CONFIG"}},
			&cli.BoolFlag{Name: "import", Value: true, Usage: "also import each app in its sandbox, as serve does (false: the files only, no interpreter needed)", EnvVars: []string{"WSGI_WASM_CHECK_IMPORT"}},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("check: want one DIR")
			}
			ceiling := policies.DefaultCeiling
			if path := c.String("config"); path != "" {
				f, err := serverconfig.Read(path)
				if err != nil {
					return err
				}
				ceiling = f.Ceiling
			}
			dirs, err := tenants.Folders(c.Args().First())
			if err != nil {
				return err
			}
			var eng *sandbox.Engine
			if c.Bool("import") && len(dirs) > 0 {
				if eng, err = newEngine(c.Context, c.String("python-dir"), c.String("cache-dir"), logger); err != nil {
					return fmt.Errorf("check: the interpreter, to import the apps (--import=false checks the files only): %w", err)
				}
				defer eng.Close(context.Background())
			}
			errs, warns := 0, 0
			for _, dir := range dirs {
				problems := tenants.Check(dir, ceiling)
				problems = append(problems, requirementProblems(dir)...)
				if eng != nil && !hasErrors(problems) {
					problems = append(problems, importProblems(c.Context, eng, dir, ceiling)...)
				}
				for _, p := range problems {
					fmt.Fprintln(c.App.Writer, p)
					if p.Error {
						errs++
					} else {
						warns++
					}
				}
			}
			fmt.Fprintf(c.App.Writer, "%d tenant(s) checked: %d error(s), %d warning(s)\n", len(dirs), errs, warns)
			if errs > 0 || len(dirs) == 0 {
				*exitCode = 1
			}
			return nil
		},
	}
}

// requirementProblems warns about each requirement of the tenant's
// requirements.txt or pyproject.toml that has no *.dist-info or *.egg-info
// in its site-packages/ (a warning: the app may not import it; `install`
// fills the folder).
func requirementProblems(dir string) []tenants.Problem {
	spec, err := deps.Requirements(dir)
	from := spec.From
	if err != nil {
		if from == "" {
			return nil // no requirements file
		}
		return []tenants.Problem{{Error: true, Path: from, What: err.Error()}}
	}
	installed, _ := deps.Installed(filepath.Join(dir, deps.SitePackages))
	var missing []string
	for _, n := range deps.Names(spec.Lines) {
		if !installed[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []tenants.Problem{{Path: from, What: fmt.Sprintf("not installed in %s: %s (run `wsgi-wasm install --find-links DIR %s`)",
		deps.SitePackages, strings.Join(missing, ", "), dir)}}
}

func hasErrors(ps []tenants.Problem) bool {
	for _, p := range ps {
		if p.Error {
			return true
		}
	}
	return false
}

// importProblems imports the tenant's app in a sandbox laid out as serve
// lays it out (its folder, its [env], its memory cap; an empty scratch
// folder for a writable data folder, so the real one is not touched), and
// reports an app that does not import, or that takes longer than serve
// allows, as an error with the guest's output.
func importProblems(ctx context.Context, eng *sandbox.Engine, dir string, ceiling policies.Policy) []tenants.Problem {
	t, err := tenants.Load(dir, ceiling)
	if err != nil {
		return nil // Check reported it
	}
	where := filepath.Join(t.Dir, tenants.FileName)
	ctx, cancel := context.WithTimeout(ctx, checkImportTimeout)
	defer cancel()
	memory := uint64(t.Policy.MemoryMB) << 20
	pyc, err := eng.CompileApp(ctx, t.Dir, memory)
	if err != nil {
		return []tenants.Problem{{Error: true, Path: where, What: "serve would refuse it: " + err.Error()}}
	}
	app := sandbox.AppConfig{App: t.App, Dir: t.Dir, Env: t.Env, PycacheDir: pyc, MemoryLimit: memory}
	if t.Policy.WritableData {
		scratch, err := os.MkdirTemp("", "wsgi-wasm-check-data-")
		if err != nil {
			return []tenants.Problem{{Error: true, Path: where, What: err.Error()}}
		}
		defer os.RemoveAll(scratch)
		app.DataDir = scratch
	}
	inst, err := eng.NewInstance(ctx, app)
	if err == nil {
		inst.Close(context.Background())
		return nil
	}
	what := "the app " + t.App + " does not import in the sandbox"
	var initErr *sandbox.InitError
	switch {
	case ctx.Err() != nil:
		what = fmt.Sprintf("the app %s did not import within %v", t.App, checkImportTimeout)
	case errors.As(err, &initErr) && initErr.Output != "":
		what += ":\n" + indent(strings.TrimSpace(initErr.Output))
	default:
		what += ": " + err.Error()
	}
	return []tenants.Problem{{Error: true, Path: where, What: what}}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
