// Command wsgi-wasm hosts Python web apps, each in its own WebAssembly
// sandbox. This file only wires the command line, signals and logging; the
// work is done by the server, pool and sandbox packages.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wsgi-wasm/wsgi-wasm/internal/netyield"
	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
	"github.com/wsgi-wasm/wsgi-wasm/python-wasi/embedded"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
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
	app := newApp(logger, level, &exitCode)
	if err := app.RunContext(ctx, flagsFirst(app, os.Args)); err != nil {
		logger.Error(err.Error())
		return 1
	}
	return exitCode
}

// newApp is the command line: global flags and the commands. --quiet sets
// level, the level of logger.
func newApp(logger *slog.Logger, level *slog.LevelVar, exitCode *int) *cli.App {
	return &cli.App{
		Name:  "wsgi-wasm",
		Usage: "run Python WSGI apps, each in its own WebAssembly sandbox",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "python-dir",
				Usage:   "`FOLDER` of the built interpreter (default: the python-wasi recipe's cache folder)",
				EnvVars: []string{"WSGI_WASM_PYTHON_DIR"},
			},
			&cli.StringFlag{
				Name:    "cache-dir",
				Usage:   "wazero compilation cache `FOLDER` (default: $XDG_CACHE_HOME/wsgi-wasm/wazero)",
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
			checkCommand(logger, exitCode),
			snapshotCommand(logger, exitCode),
			pythonCommand(logger, exitCode),
			execCommand(logger, exitCode),
			installCommand(logger),
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
}

// newEngine finds the interpreter (pythonDir, or the recipe's cache) and
// starts the wazero engine with the compilation cache in cacheDir.
func newEngine(ctx context.Context, pythonDir, cacheDir string, logger *slog.Logger) (*sandbox.Engine, error) {
	dir := pythonDir
	if dir == "" && embedded.Available {
		cache := cacheDir
		if cache == "" {
			cache = sandbox.DefaultCacheDir()
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
	opts := sandbox.Options{Interpreter: interp, CacheDir: cacheDir, Logger: logger}
	if p := frontPoller(); p != nil {
		opts.Yield = p.Yield
	}
	return sandbox.New(ctx, opts)
}

// frontPoller is the process's netyield.Poller: the front's listeners
// register their sockets with it, and guests' check-ins ask it whether a
// client is waiting (internal/netyield says why). Go's scheduler is one per
// process, so the poller is too. nil if the kernel refuses an epoll set,
// or with WSGI_WASM_CHECKIN_YIELD=gosched (for comparisons: the benchmarks
// run a row so): check-ins then only yield.
var frontPoller = sync.OnceValue(func() *netyield.Poller {
	if os.Getenv("WSGI_WASM_CHECKIN_YIELD") == "gosched" {
		return nil
	}
	p, err := netyield.New()
	if err != nil {
		return nil
	}
	return p
})

// httpTimeouts bound a client's connection to the front.
type httpTimeouts struct {
	readHeader, idle, write time.Duration
}

// frontFlags are the flags that run and serve share: the front's, and
// those of snapshots.
func frontFlags() []cli.Flag {
	return append(append(httpFlags(), snapshotFlags()...), outboundFlags()...)
}

// outboundFlags are the settings of tenants' outbound connections.
func outboundFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "outbound-ca-file", Usage: "CA certificates `FILE` (PEM) that verify the servers tenants connect to over TLS, instead of the host's store (a tenant may still load its own)", EnvVars: []string{"WSGI_WASM_OUTBOUND_CA_FILE"}},
	}
}

// outboundRootCAs is the pool of --outbound-ca-file, or nil (the host's
// store) when path is empty.
func outboundRootCAs(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	return outbound.LoadRootCAs(path)
}

// httpFlags are the front's flags: its timeouts, connection caps, trusted
// proxies and the access log.
func httpFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "read-header-timeout", Value: 10 * time.Second, Usage: "a client has `DURATION` to send the request line and headers", EnvVars: []string{"WSGI_WASM_READ_HEADER_TIMEOUT"}},
		&cli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "a keep-alive connection waits `DURATION` for its next request (gunicorn's --keep-alive)", EnvVars: []string{"WSGI_WASM_IDLE_TIMEOUT"}},
		&cli.DurationFlag{Name: "write-timeout", Usage: "a response must be written within `DURATION` of the end of the request's headers (0: no limit; the tenant's request_timeout still applies)", EnvVars: []string{"WSGI_WASM_WRITE_TIMEOUT"}},
		&cli.IntFlag{Name: "max-connections", Value: 10000, Usage: "open client connections at most, in total; more are accepted and closed at once (0: no cap)", EnvVars: []string{"WSGI_WASM_MAX_CONNECTIONS"}},
		&cli.IntFlag{Name: "max-connections-per-ip", Value: 256, Usage: "open connections at most from one client address, the --forwarded-allow-ips proxies excepted; more are accepted and closed at once (0: no cap)", EnvVars: []string{"WSGI_WASM_MAX_CONNECTIONS_PER_IP"}},
		&cli.StringSliceFlag{Name: "forwarded-allow-ips", Value: cli.NewStringSlice("127.0.0.1", "::1"), Usage: "proxy `IP`s whose X-Forwarded-For/-Proto are trusted (\"*\" for all)", EnvVars: []string{"WSGI_WASM_FORWARDED_ALLOW_IPS"}},
		&cli.StringFlag{Name: "access-logfile", Value: "-", Usage: "access log `FILE`, one line per request in gunicorn's format plus tenant and seconds (\"-\": standard output, \"\": none)", EnvVars: []string{"WSGI_WASM_ACCESS_LOGFILE"}},
	}
}

// newHTTPServer is the front's net/http server for run and serve. Its
// handler calls server.CheckRequest, which answers "OPTIONS *" itself and
// finds each connection's framing checks through server.ConnContext; serve
// it on a frontListener.
func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler: h, ReadHeaderTimeout: t.readHeader, IdleTimeout: t.idle, WriteTimeout: t.write, MaxHeaderBytes: 1 << 16,
		ConnContext: server.ConnContext, DisableGeneralOptionsHandler: true,
	}
}

// frontListener listens on addr for the front: the connection caps (shared
// by all listeners of caps), TLS if certFile is set, and the framing checks
// of server.FramingListener.
func frontListener(addr string, caps *server.ConnLimits, certFile, keyFile string) (net.Listener, error) {
	var tlsConfig *tls.Config
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if p := frontPoller(); p != nil {
		if ln, err = p.Listener(ln); err != nil {
			return nil, err
		}
	}
	return server.FramingListener(caps.Listener(ln), tlsConfig), nil
}

// openAccessLog opens the access log: "-" is standard output, "" none. The
// returned close function is never nil.
func openAccessLog(path string) (io.Writer, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("access log: %w", err)
	}
	return f, func() { f.Close() }, nil
}
