package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/serverconfig"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// checkCommand validates a tenant folder or a tree of them without serving.
func checkCommand(exitCode *int) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a tenant folder, or every tenant folder below DIR, without serving; exit 1 on any error",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "check against the ceiling of this server config `FILE`", EnvVars: []string{"WSGI_WASM_CONFIG"}},
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
			problems, n, err := tenants.CheckTree(c.Args().First(), ceiling)
			if err != nil {
				return err
			}
			errs := 0
			for _, p := range problems {
				fmt.Fprintln(c.App.Writer, p)
				if p.Error {
					errs++
				}
			}
			fmt.Fprintf(c.App.Writer, "%d tenant(s) checked: %d error(s), %d warning(s)\n", n, errs, len(problems)-errs)
			if errs > 0 || n == 0 {
				*exitCode = 1
			}
			return nil
		},
	}
}
