// Command wsgi-wasm hosts Python web apps, each in its own WebAssembly
// sandbox. This file only wires the command line, signals and logging; the
// work is done by the runtime package.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
	"github.com/wsgi-wasm/wsgi-wasm/python-wasi/embedded"
	"github.com/wsgi-wasm/wsgi-wasm/runtime"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// --quiet raises the level for every command (set in Before, once the
	// flags are parsed); the commands share this one logger.
	level := new(slog.LevelVar)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	exitCode := 0
	app := &cli.App{
		Name:  "wsgi-wasm",
		Usage: "run Python WSGI apps, each in its own WebAssembly sandbox",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "python-dir",
				Usage:   "folder of the built interpreter (default: the python-wasi recipe's cache folder)",
				EnvVars: []string{"WSGI_WASM_PYTHON_DIR"},
			},
			&cli.StringFlag{
				Name:    "cache-dir",
				Usage:   "wazero compilation cache folder (default: $XDG_CACHE_HOME/wsgi-wasm/wazero)",
				EnvVars: []string{"WSGI_WASM_CACHE_DIR"},
			},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "log only warnings and errors", EnvVars: []string{"WSGI_WASM_QUIET"}},
		},
		Before: func(c *cli.Context) error {
			if c.Bool("quiet") {
				level.Set(slog.LevelWarn)
			}
			return nil
		},
		Commands: []*cli.Command{
			serveCommand(logger),
			runCommand(logger),
			checkCommand(&exitCode),
			pythonCommand(logger, &exitCode),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(c.App.Writer, "wsgi-wasm", version)
					return nil
				},
			},
		},
	}
	if err := app.RunContext(ctx, os.Args); err != nil {
		logger.Error(err.Error())
		return 1
	}
	return exitCode
}

// newEngine finds the interpreter (--python-dir, or the recipe's cache) and
// starts the wazero engine with the compilation cache (--cache-dir).
func newEngine(c *cli.Context, logger *slog.Logger) (*runtime.Engine, error) {
	dir := c.String("python-dir")
	if dir == "" && embedded.Available {
		cache := c.String("cache-dir")
		if cache == "" {
			cache = runtime.DefaultCacheDir()
		}
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return nil, err
		}
		var err error
		if dir, err = embedded.Extract(filepath.Dir(cache)); err != nil {
			return nil, err
		}
	}
	interp, err := pythonwasi.Locate(dir)
	if err != nil {
		return nil, err
	}
	return runtime.New(c.Context, runtime.Options{Interpreter: interp, CacheDir: c.String("cache-dir"), Logger: logger})
}

// newHTTPServer is the front's net/http server for run and serve, with the
// same timeouts and header bound for both.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 16}
}
