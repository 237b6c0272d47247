// Package sandbox owns wazero: one runtime per process, the CPython
// interpreter compiled once (through wazero's on-disk compilation cache) and
// shared by every caller, and the module configuration that sandboxes each
// instance. Only this package and hostabi import wazero.
package sandbox

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
)

// Options configure an Engine. The zero value of every field but Interpreter
// is usable.
type Options struct {
	// Interpreter is the built interpreter folder.
	Interpreter pythonwasi.Interpreter
	// CacheDir holds wazero's compilation cache; empty means
	// DefaultCacheDir().
	CacheDir string
	// Logger receives compile progress; nil discards it.
	Logger *slog.Logger
	// ZoneinfoDir is the time zone database given to every instance
	// read-only; empty means /usr/share/zoneinfo when it exists.
	ZoneinfoDir string
	// ReactorModule overrides the reactor's path (benchmarks compare the
	// shipped module with an uninstrumented one).
	ReactorModule string
	// SnapshotMapping is how a restored instance's memory gets its image;
	// the zero value, MapPrivate, is the shipped choice.
	SnapshotMapping SnapshotMapping
	// Yield is what a guest's periodic check-in does to let other
	// goroutines run (interrupt.go); nil means runtime.Gosched. The server
	// gives internal/netyield's, which also lets the network in.
	Yield func()
	// MaxRunsWithoutWriteSet bounds the instances restored without their
	// snapshot's write set that restore or serve their first request at
	// once (coldgate.go); 0 means GOMAXPROCS.
	MaxRunsWithoutWriteSet int
}

// SnapshotMapping is how a restored instance's memory gets its image. The
// benchmarks compare them (benchmarks/SNAPSHOTS.md).
type SnapshotMapping int

const (
	// MapPrivate maps the snapshot file copy-on-write: pages come from the
	// page cache on first touch, shared until written.
	MapPrivate SnapshotMapping = iota
	// MapPrivatePopulate is MapPrivate with the page tables filled at
	// restore (mapped read-only with MAP_POPULATE, then made writable): no
	// faults for reads later, a slower restore.
	MapPrivatePopulate
	// CopyImage copies the image into anonymous memory: nothing shared.
	CopyImage
)

func (m SnapshotMapping) String() string {
	switch m {
	case MapPrivate:
		return "private mapping"
	case MapPrivatePopulate:
		return "private mapping, pre-faulted"
	case CopyImage:
		return "eager copy"
	}
	return fmt.Sprintf("SnapshotMapping(%d)", int(m))
}

// DefaultCacheDir is $XDG_CACHE_HOME/wsgi-wasm/wazero (or ~/.cache/...).
func DefaultCacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "wsgi-wasm", "wazero")
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "wsgi-wasm", "wazero")
}

// Engine is the process-wide wazero runtime with the interpreter modules.
// Modules are compiled on first use and then shared; an Engine is safe for
// concurrent use.
type Engine struct {
	interp      pythonwasi.Interpreter
	reactorPath string
	zoneinfo    string
	rt          wazero.Runtime
	cacheDir    string
	log         *slog.Logger

	mu       sync.Mutex
	compiled map[string]wazero.CompiledModule

	dataLocks  sync.Map // host data folder -> chan struct{} (capacity 1)
	dataQuotas sync.Map // host data folder -> *dataQuota
	// compileFailures are the source hashes whose compile passed its
	// deadline -> the error (CompileApp).
	compileFailures sync.Map
	started         atomic.Int64

	restored     atomic.Int64
	restoredCold atomic.Int64 // of restored, those without a write set
	running      atomic.Int64 // instances inside a request's guest call (Instance.Serve)

	snapMapping SnapshotMapping
	yield       func()    // Options.Yield, never nil
	gate        *coldGate // restores and first requests without a write set

	reactorOnce sync.Once
	reactorSum  [32]byte // SHA-256 of the reactor as built, part of snapshot keys
	reactorImg  *restorable
	reactorMod  wazero.CompiledModule
	reactorErr  error
}

// New creates the wazero runtime with the on-disk compilation cache and
// instantiates WASI preview 1 in it.
func New(ctx context.Context, opts Options) (*Engine, error) {
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: compilation cache %s: %w", cacheDir, err)
	}
	cfg := wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache)
	rt, err := newRuntime(ctx, cfg)
	if err != nil {
		return nil, err
	}
	reactorPath := opts.ReactorModule
	if reactorPath == "" {
		reactorPath = opts.Interpreter.ReactorModule()
	}
	zoneinfo := opts.ZoneinfoDir
	if zoneinfo == "" {
		if st, err := os.Stat("/usr/share/zoneinfo"); err == nil && st.IsDir() {
			zoneinfo = "/usr/share/zoneinfo"
		}
	}
	yield := opts.Yield
	if yield == nil {
		yield = goruntime.Gosched
	}
	cold := opts.MaxRunsWithoutWriteSet
	if cold <= 0 {
		cold = goruntime.GOMAXPROCS(0)
	}
	return &Engine{
		yield:       yield,
		snapMapping: opts.SnapshotMapping,
		gate:        newColdGate(cold),
		zoneinfo:    zoneinfo,
		interp:      opts.Interpreter,
		reactorPath: reactorPath,
		rt:          rt,
		cacheDir:    cacheDir,
		log:         logger,
		compiled:    map[string]wazero.CompiledModule{},
	}, nil
}

// newRuntime makes a wazero runtime with WASI and the host ABI.
func newRuntime(ctx context.Context, cfg wazero.RuntimeConfig) (wazero.Runtime, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("sandbox: instantiate WASI: %w", err)
	}
	if err := hostabi.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return rt, nil
}

// Close releases the runtime and every module compiled or instantiated in
// it.
func (e *Engine) Close(ctx context.Context) error {
	return e.rt.Close(ctx)
}

// compile returns the compiled module at path, compiling it on first use.
// A compile that misses the on-disk cache takes seconds, so it is logged with
// its duration and whether the cache served it.
func (e *Engine) compile(ctx context.Context, path string) (wazero.CompiledModule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m, ok := e.compiled[path]; ok {
		return m, nil
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox: read module: %w", err)
	}
	m, err := e.compileBinary(ctx, filepath.Base(path), bin)
	if err == nil {
		e.compiled[path] = m
	}
	return m, err
}

// compileBinary compiles a module. A compile that misses the on-disk cache
// takes seconds, so progress is logged while it runs, then its duration
// and whether the cache served it.
func (e *Engine) compileBinary(ctx context.Context, name string, bin []byte) (wazero.CompiledModule, error) {
	before := countEntries(e.cacheDir)
	start := time.Now()
	// A compile that misses the cache takes seconds: say so while it runs.
	done, progress := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(progress)
		tick := time.NewTicker(compileProgressEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				e.log.Info("compiling interpreter (first start; cached afterwards)", "module", name,
					"elapsed_seconds", time.Since(start).Round(time.Second).Seconds())
			}
		}
	}()
	ctx = experimental.WithCompilationWorkers(ctx, goruntime.GOMAXPROCS(0))
	m, err := e.rt.CompileModule(ctx, bin)
	close(done)
	<-progress
	if err != nil {
		return nil, fmt.Errorf("sandbox: compile %s: %w", name, err)
	}
	msg, cached := "interpreter compiled and cached for the next start", countEntries(e.cacheDir) == before
	if cached {
		msg = "interpreter loaded from the compilation cache"
	} else {
		// The compiler's working memory (about 150 MiB for the
		// interpreter) is garbage now, but Go's scavenger hands idle heap
		// back to the kernel slowly: a server started on an empty cache
		// kept 226 MiB of RSS against 78 MiB for one started on a warm
		// cache, still 30 s later. Give it back at once.
		debug.FreeOSMemory()
	}
	e.log.Info(msg, "module", name, "seconds", time.Since(start).Seconds(), "from_cache", cached, "cache_dir", e.cacheDir)
	return m, nil
}

// compileProgressEvery is how often a compile that is still running says so.
var compileProgressEvery = time.Second

func countEntries(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// Command is one run of the command module, like `python ARGS...`.
type Command struct {
	// Args are the arguments after the program name.
	Args []string
	// Dir is the host folder mounted read-only as the guest's / and working
	// directory; empty mounts nothing.
	Dir string
	// Env is the guest's whole environment as KEY=VALUE; nothing of the
	// host's environment is passed unless it is listed here.
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Mounts are further host folders the guest sees.
	Mounts []Mount
	// MemoryLimit caps the guest's linear memory in bytes (0: wasm32's
	// 4 GiB); past it, allocations fail with MemoryError.
	MemoryLimit uint64
}

// Mount maps a host folder into the guest, read-only unless Writable.
type Mount struct {
	Host, Guest string
	Writable    bool
}

// ParseMount reads "HOST:GUEST" or "HOST:GUEST:rw" (or ":ro").
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
		return Mount{}, fmt.Errorf("sandbox: mount %q: want HOST:GUEST[:rw|:ro] with an absolute GUEST path", s)
	}
	m := Mount{Host: parts[0], Guest: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "rw":
			m.Writable = true
		case "ro":
		default:
			return Mount{}, fmt.Errorf("sandbox: mount %q: mode must be rw or ro", s)
		}
	}
	return m, nil
}

// RunCommand runs the command module to completion and returns its exit code.
// The guest gets the real wall and monotonic clocks, a sleep that sleeps,
// crypto/rand as its random source and the stdlib zip read-only; its file
// locks on its mounts are real (hostabi.FileLocks). It is stopped when ctx
// is done (an error, not an exit code).
func (e *Engine) RunCommand(ctx context.Context, c Command) (int, error) {
	compiled, err := e.compile(ctx, e.interp.CommandModule())
	if err != nil {
		return 0, err
	}
	locks := hostabi.NewFileLocks()
	defer locks.Close()
	fsc := wazero.NewFSConfig()
	if c.Dir != "" {
		fsc = mount(fsc, newLockingFS(c.Dir, false, locks), "/")
	}
	for _, m := range c.Mounts {
		fsc = mount(fsc, newLockingFS(m.Host, m.Writable, locks), m.Guest)
	}
	fsc = mount(fsc, newLockingFS(e.interp.LibDir(), false, locks), pythonwasi.GuestLibDir)
	fsc = mount(fsc, devFS{}, GuestDevDir)
	return e.runCommandModule(hostabi.WithFileLocks(ctx, locks), compiled, fsc, c)
}

// runCommandModule runs the compiled command module on the file system
// fsc with c's arguments, environment, stdio and memory cap (without one,
// the whole 4 GiB a wasm32 module can address). Like an instance, it is
// stopped at a loop head through its interrupt word when ctx ends (ABI.md
// "Interruption"), and a sleep it is in ends then too.
func (e *Engine) runCommandModule(ctx context.Context, compiled wazero.CompiledModule, fsc wazero.FSConfig, c Command) (int, error) {
	var late lateInterrupter
	cfg := baseModuleConfig().
		WithNanosleep(late.sleep).
		WithName("").
		WithStartFunctions().
		WithArgs(append([]string{"python"}, c.Args...)...).
		WithFSConfig(fsc).
		WithEnv("PYTHONHOME", pythonwasi.GuestHome)
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	if c.Stdin != nil {
		cfg = cfg.WithStdin(c.Stdin)
	}
	if c.Stdout != nil {
		cfg = cfg.WithStdout(c.Stdout)
	}
	if c.Stderr != nil {
		cfg = cfg.WithStderr(c.Stderr)
	}
	limit := c.MemoryLimit
	if limit == 0 {
		limit = wasm32AddressSpace
	}
	mem, err := newLinearMemory(limit, nil, memoryImage{})
	if err != nil {
		return 0, err
	}
	mod, err := e.rt.InstantiateModule(withLinearMemory(ctx, mem), compiled, cfg)
	if err != nil {
		mem.Free()
		return 0, fmt.Errorf("sandbox: python: %w", err)
	}
	defer mod.Close(ctx)
	intr, err := late.attach(mod, mem, e.yield, "python: the command module")
	if err != nil {
		return 0, err
	}
	ctx = hostabi.WithInterrupter(ctx, intr)
	release := intr.watch(ctx)
	defer release()
	_, err = mod.ExportedFunction("_start").Call(ctx)
	var exit *sys.ExitError
	switch {
	case err != nil && ctx.Err() != nil:
		return 0, fmt.Errorf("sandbox: python: %w", context.Cause(ctx))
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return int(exit.ExitCode()), nil
	default:
		return 0, fmt.Errorf("sandbox: python: %w", err)
	}
}

// wasm32AddressSpace is the most linear memory a wasm32 module can have.
const wasm32AddressSpace = 1 << 32

// execPrelude is the program RunAppCommand runs (python -c), with the
// command's arguments after it.
//
//go:embed exec.py
var execPrelude string

// RunAppCommand runs a command in the sandbox of an app, laid out as an
// instance of cfg is (ABI.md "Guest file system": its folder read-only at
// /app, its data folder writable at /data within its quota, zoneinfo,
// /pyc, /dev/null; cfg.Env and WSGI_WASM_DATA_DIR; cfg.MemoryLimit), but
// with the command module: the working directory is /app, cfg.PythonPath,
// /app and /app/site-packages come first on sys.path, and args are what follows
// `python` (a script of the folder such as manage.py, -m MODULE, -c CODE),
// or the name of a console script of site-packages (flask), or else of a
// module run as -m would (exec.py). c's Args, Dir and Mounts are ignored;
// its Env is added to cfg.Env. The guest's stdio is c's; cfg.Log receives
// the data quota's refusals. Its outbound connections are an instance's:
// cfg.Outbound opens them, at most cfg.MaxConnections at a time, and they
// are closed when the command ends. Its file locks are real, as an
// instance's (hostabi.FileLocks); take LockData first to keep other
// commands of the app out.
func (e *Engine) RunAppCommand(ctx context.Context, cfg AppConfig, args []string, c Command) (int, error) {
	compiled, err := e.compile(ctx, e.interp.CommandModule())
	if err != nil {
		return 0, err
	}
	run := c
	run.Args = []string{"-c", execPrelude}
	for _, p := range cfg.PythonPath {
		run.Args = append(run.Args, "--path="+p)
	}
	run.Args = append(append(run.Args, "--"), args...)
	run.Env = nil
	for k, v := range cfg.Env {
		run.Env = append(run.Env, k+"="+v)
	}
	if cfg.DataDir != "" {
		run.Env = append(run.Env, EnvDataDir+"="+GuestDataDir)
	}
	if cfg.PycacheDir != "" {
		run.Env = append(run.Env, "PYTHONPYCACHEPREFIX="+GuestPycacheDir)
	}
	run.Env = append(run.Env, c.Env...)
	run.MemoryLimit = cfg.MemoryLimit
	if run.MemoryLimit == 0 {
		run.MemoryLimit = DefaultMemoryLimit
	}
	conns := hostabi.NewConns(cfg.Outbound, cfg.MaxConnections)
	defer conns.Close()
	fsc, locks := e.appFS(cfg, false)
	defer locks.Close()
	ctx = hostabi.WithFileLocks(hostabi.WithConns(ctx, conns), locks)
	return e.runCommandModule(ctx, compiled, fsc, run)
}

// baseModuleConfig is what every guest gets: real clocks, a real sleep and
// the host's cryptographic random source. Everything else (files, env,
// stdio) is denied until a caller grants it.
func baseModuleConfig() wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
}

// InstancesStarted counts instances whose app was imported successfully.
func (e *Engine) InstancesStarted() int64 { return e.started.Load() }

// InstancesRestored counts instances restored from a snapshot.
func (e *Engine) InstancesRestored() int64 { return e.restored.Load() }

// Serving is how many instances are inside a request's guest call now.
func (e *Engine) Serving() int { return int(e.running.Load()) }

// LockData takes the lock of the writable data folder dir, waiting until
// ctx ends at the latest: `wsgi-wasm exec` holds it while its command runs,
// so that two commands of one tenant (two migrate) never run at once. The
// lock holds across engines and processes: it is also an flock(2) on the
// folder itself, polled every 20 ms while another process holds it.
// Requests do not take it: their SQLite databases and fcntl locks are
// locked for real through the host (hostabi.FileLocks), so a tenant's
// instances and exec's command run side by side. The caller runs unlock
// when done.
func (e *Engine) LockData(ctx context.Context, dir string) (unlock func(), err error) {
	l, _ := e.dataLocks.LoadOrStore(filepath.Clean(dir), make(chan struct{}, 1))
	lock := l.(chan struct{})
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	f, err := lockFolder(ctx, dir)
	if err != nil {
		<-lock
		return nil, err
	}
	return func() {
		f.Close() // releases the flock
		<-lock
	}, nil
}

// lockFolder takes an exclusive flock on the folder dir, polling until ctx
// ends; closing the file releases it.
func lockFolder(ctx context.Context, dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: lock data folder: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("sandbox: lock data folder %s: %w", dir, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			f.Close()
			return nil, context.Cause(ctx)
		}
	}
}

// Logger is the engine's logger (Options.Logger), for what serves on it.
func (e *Engine) Logger() *slog.Logger { return e.log }

// RecordsWriteSets reports whether restored instances map their snapshot
// privately (MapPrivate), the one mode in which a snapshot's write set is
// used (writeset.go).
func (e *Engine) RecordsWriteSets() bool { return e.snapMapping == MapPrivate }
