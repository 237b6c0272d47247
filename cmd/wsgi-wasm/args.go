package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst lets a command's flags follow its arguments, as gunicorn's
// do (`wsgi-wasm run app:application --workers 4`): it moves the
// command's flags, with their values, before its first argument, and
// leaves everything after "--" where it is. urfave/cli stops reading flags
// at the first argument.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	i := 1
	// Global flags, up to the command's name.
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		i += flagLen(app.Flags, args, i)
	}
	out = append(out, args[1:min(i, len(args))]...)
	if i >= len(args) {
		return out
	}
	cmd := app.Command(args[i])
	out = append(out, args[i])
	i++
	if cmd == nil || cmd.SkipFlagParsing {
		return append(out, args[i:]...)
	}
	var flags, positional []string
	for i < len(args) {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			n := flagLen(cmd.Flags, args, i)
			flags = append(flags, args[i:min(i+n, len(args))]...)
			i += n
		default:
			positional = append(positional, a)
			i++
		}
	}
	return append(append(out, flags...), positional...)
}

// flagLen is how many words the flag at args[i] takes: 2 for a flag of
// flags that takes a value given as the next word, else 1.
func flagLen(flags []cli.Flag, args []string, i int) int {
	name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
	if hasValue {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if v, ok := f.(cli.DocGenerationFlag); ok && v.TakesValue() {
				return 2
			}
			return 1
		}
	}
	return 1
}
