package main

import (
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// pythonCommand runs the command module like `python ARGS...`: the current
// directory is the guest's read-only /, stdio is passed through and the exit
// code comes back.
func pythonCommand(logger *slog.Logger, exitCode *int) *cli.Command {
	return &cli.Command{
		Name:      "python",
		Usage:     "run the sandboxed interpreter like python, with the current directory read-only",
		ArgsUsage: "-- [python arguments...]",
		Flags: []cli.Flag{
			&cli.GenericFlag{Name: "env", Value: &keyValues{}, Usage: "set `KEY=VALUE` in the guest (repeatable; a value may hold commas); the host environment is not passed"},
			&cli.StringSliceFlag{Name: "mount", Usage: "also mount host folder `HOST:GUEST[:rw]` (repeatable; read-only unless :rw)"},
		},
		Action: func(c *cli.Context) error {
			eng, err := newEngine(c.Context, c.String("python-dir"), c.String("cache-dir"), logger)
			if err != nil {
				return err
			}
			defer eng.Close(c.Context)
			var mounts []sandbox.Mount
			for _, spec := range c.StringSlice("mount") {
				m, err := sandbox.ParseMount(spec)
				if err != nil {
					return err
				}
				mounts = append(mounts, m)
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			code, err := eng.RunCommand(c.Context, sandbox.Command{
				Args:   c.Args().Slice(),
				Dir:    wd,
				Env:    c.Generic("env").(*keyValues).pairs(),
				Mounts: mounts,
				Stdin:  os.Stdin,
				Stdout: os.Stdout,
				Stderr: os.Stderr,
			})
			*exitCode = code
			return err
		},
	}
}
