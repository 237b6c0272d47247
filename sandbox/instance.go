package sandbox

import (
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
)

// Guest paths (ABI.md "Guest file system").
const (
	// GuestAppDir is where a tenant's folder is mounted, read-only.
	GuestAppDir = "/app"
	// GuestDataDir is where a tenant's writable data folder is mounted,
	// when its policy grants one; EnvDataDir names it in the environment.
	GuestDataDir = "/data"
	EnvDataDir   = "WSGI_WASM_DATA_DIR"
	// GuestZoneinfoDir is the host's time zone database, read-only, where
	// zoneinfo, pytz and dateutil look for it.
	GuestZoneinfoDir = "/usr/share/zoneinfo"
)

// AppConfig says what one reactor instance runs. It is immutable once an
// instance has been made from it.
type AppConfig struct {
	// App is "module:callable", as gunicorn takes it.
	App string
	// Dir is the host folder of the app's code, mounted read-only at /app.
	Dir string
	// Env is the app's whole environment; nothing of the host's is passed.
	Env map[string]string
	// DataDir, if set, is a host folder mounted writable at /data.
	DataDir string
	// DataMaxBytes, if more than 0, is what DataDir may hold: its files'
	// sizes summed (and at most MaxDataFiles entries); writes past it fail
	// with an OSError and a line in Log.
	DataMaxBytes int64
	// PycacheDir, if set, holds the app's compiled .pyc (from CompileApp),
	// mounted read-only at /pyc.
	PycacheDir string
	// PythonPath are guest folders (inside GuestAppDir) put first on
	// sys.path, in this order, before the app's folder (run's --pythonpath).
	PythonPath []string
	// Validate wraps the app in wsgiref.validate.validator inside the guest
	// (tests run every app both ways).
	Validate bool
	// Log receives the guest's stdout/stderr, wsgi.errors, logging records
	// and tracebacks (GuestLog).
	Log GuestLog
	// Stdio receives what the guest writes to WASI stdout/stderr before the
	// bootstrap redirects them (interpreter start-up errors).
	Stdio io.Writer
	// MemoryLimit caps the instance's linear memory in bytes; 0 means
	// DefaultMemoryLimit. Past it, allocations fail with MemoryError.
	MemoryLimit uint64
	// Outbound opens the app's outbound connections (hostabi/ABI.md
	// "Outbound connections"); nil refuses every one (outbound.Deny).
	Outbound outbound.Dialer
	// MaxConnections caps the connections one instance holds open; 0 means
	// hostabi.DefaultMaxConnections, less than 0 none.
	MaxConnections int
}

// DefaultMemoryLimit is the linear memory cap of an instance whose
// AppConfig sets none.
const DefaultMemoryLimit = 512 << 20

// Instance is one initialised reactor: CPython started and the app imported,
// or restored from a snapshot of that state. It serves one request at a
// time and is not safe for concurrent use.
type Instance struct {
	mod         api.Module
	handle      api.Function
	mem         *linearMemory
	interrupt   *interrupter
	log         GuestLog           // cfg.Log plus the start-up buffer while starting
	conns       *hostabi.Conns     // its outbound connections, closed with it
	locks       *hostabi.FileLocks // the files it may lock (ABI.md "File locks"), unlocked with it
	globalNames []string
	restored    bool          // from its app's own snapshot: it cannot be saved
	base        *Snapshot     // the base image it started from, if any (base.go)
	recordsFor  *Snapshot     // restored without a write set: records it (writeset.go)
	gate        *coldGate     // restored without a write set: its first request takes a turn (coldgate.go)
	recording   *recording    // the one recording recordsFor's set, which other restores wait for
	running     *atomic.Int64 // its engine's count of instances serving (Engine.Serving)
	broken      atomic.Bool
	served      atomic.Int64
	peak        atomic.Uint64
	resident    atomic.Pointer[residentAt] // the last measure, see Resident
}

type residentAt struct {
	Resident
	at time.Time
}

var instanceSeq atomic.Uint64

// NewInstance instantiates the reactor, starts CPython and imports the app.
// The error of a failed init includes what the guest printed.
func (e *Engine) NewInstance(ctx context.Context, cfg AppConfig) (*Instance, error) {
	return e.start(ctx, cfg, nil, fromScratch)
}

// Restore makes an instance of cfg from a snapshot of it (ABI.md
// "Snapshots"): no interpreter start and no import, only the mapping of the
// image and the reseeding of its random generators. cfg must be the
// configuration the snapshot was made with (SnapshotKey).
//
// Without a write set (coldgate.go), it first waits for the instance that
// records the snapshot's, if one is restoring or serving its first request,
// else records it itself; it then waits for its turn among the restores
// without one, until ctx ends at the latest.
func (e *Engine) Restore(ctx context.Context, cfg AppConfig, snap *Snapshot) (*Instance, error) {
	if !e.RecordsWriteSets() || snap.writes.Load() != nil {
		return e.start(ctx, cfg, snap, fromSnapshot)
	}
	rec, mine := snap.claimRecording()
	if !mine {
		if err := rec.wait(ctx); err != nil {
			return nil, fmt.Errorf("sandbox: restore: waiting for the write set: %w", err)
		}
		if snap.writes.Load() != nil {
			return e.start(ctx, cfg, snap, fromSnapshot)
		}
		// The recorder gave up or stands idle: record instead, or go ahead.
		if rec, mine = snap.claimRecording(); !mine {
			rec = nil
		}
	}
	release, err := e.gate.acquire(ctx)
	if err != nil {
		if rec != nil {
			rec.finish()
		}
		return nil, fmt.Errorf("sandbox: restore: waiting for a turn without a write set: %w", err)
	}
	inst, err := e.start(ctx, cfg, snap, fromSnapshot)
	release()
	if err != nil || inst.recordsFor == nil { // failed, or restored with the set recorded meanwhile
		if rec != nil {
			rec.finish()
		}
		return inst, err
	}
	inst.gate = e.gate
	e.restoredCold.Add(1)
	if rec != nil {
		inst.recording = rec
		rec.idle(true)
	}
	return inst, nil
}

// origin is where a new instance's state comes from.
type origin int

const (
	fromScratch  origin = iota // the module's initial data: _initialize, wsgi_init
	fromSnapshot               // the app's snapshot: wsgi_after_restore
	fromBase                   // a base image: wsgi_after_restore, wsgi_init_app
	asBase                     // the initial data, without an app: _initialize, wsgi_init_base
)

// start instantiates the reactor on a memory holding either the module's
// initial data (snap nil) or a snapshot's image, and brings it to where
// from says.
func (e *Engine) start(ctx context.Context, cfg AppConfig, snap *Snapshot, from origin) (*Instance, error) {
	r, compiled, err := e.reactor(ctx)
	if err != nil {
		return nil, err
	}
	fsc, locks := e.appFS(cfg, from == asBase)
	var late lateInterrupter
	mc := baseModuleConfig().
		WithNanosleep(late.sleep).
		WithName(fmt.Sprintf("instance-%d", instanceSeq.Add(1))).
		WithStartFunctions().
		WithFSConfig(fsc)
	if from == asBase {
		// Nothing of any tenant: wsgi_init_app takes the arguments and the
		// environment of the instance it runs in.
		mc = mc.WithArgs("wsgi-wasm")
	} else {
		mc = mc.WithArgs(guestArgs(cfg)...)
		for k, v := range cfg.Env {
			mc = mc.WithEnv(k, v)
		}
		if cfg.DataDir != "" {
			mc = mc.WithEnv(EnvDataDir, GuestDataDir)
		}
	}
	var startup limitedBuffer
	var stdio io.Writer = &startup
	if cfg.Stdio != nil {
		stdio = io.MultiWriter(&startup, cfg.Stdio)
	}
	mc = mc.WithStdout(stdio).WithStderr(stdio)
	limit := cfg.MemoryLimit
	if limit == 0 {
		limit = DefaultMemoryLimit
	}
	inst := &Instance{globalNames: r.globals, restored: from == fromSnapshot, running: &e.running,
		conns: hostabi.NewConns(cfg.Outbound, cfg.MaxConnections), locks: locks}
	if from == fromBase {
		inst.base = snap
	}
	inst.log = func(level slog.Level, msg []byte) {
		startup.Write(msg)
		startup.Write([]byte{'\n'})
		if cfg.Log != nil {
			cfg.Log(level, msg)
		}
	}
	img := memoryImage{data: r}
	if snap != nil {
		img = memoryImage{snap: snap, mapping: e.snapMapping}
		if from == fromSnapshot && e.snapMapping == MapPrivate && snap.writes.Load() == nil {
			inst.recordsFor = snap
		}
	}
	if inst.mem, err = newLinearMemory(limit, &inst.peak, img); err != nil {
		inst.conns.Close()
		inst.locks.Close()
		return nil, err
	}
	mod, err := e.rt.InstantiateModule(withLinearMemory(ctx, inst.mem), compiled, mc)
	if err != nil {
		inst.mem.Free()
		inst.conns.Close()
		inst.locks.Close()
		return nil, fmt.Errorf("sandbox: instantiate reactor: %w", err)
	}
	inst.mod, inst.handle = mod, mod.ExportedFunction(hostabi.ExportHandle)
	fail := func(format string, args ...any) (*Instance, error) {
		inst.close()
		msg := fmt.Sprintf(format, args...)
		if out := startup.String(); out != "" {
			msg += ":\n" + out
		}
		return nil, errors.New(msg)
	}
	if inst.interrupt, err = late.attach(mod, inst.mem, e.yield, "reactor"); err != nil {
		return fail("%v", err)
	}
	ctx = inst.callContext(ctx)
	release := inst.interrupt.watch(ctx)
	defer release()
	init := hostabi.ExportInit
	switch from {
	case fromSnapshot, fromBase:
		inst.mem.awaitPrefetch()
		if err := e.resume(ctx, inst, snap); err != nil {
			return fail("%v", err)
		}
		if from == fromSnapshot {
			e.restored.Add(1)
		}
		init = hostabi.ExportInitApp
	case asBase:
		init = hostabi.ExportInitBase
	}
	if snap == nil {
		if _, err := mod.ExportedFunction(hostabi.ExportInitialize).Call(ctx); err != nil {
			return fail("sandbox: _initialize: %v", err)
		}
	}
	if from != fromSnapshot {
		res, err := mod.ExportedFunction(init).Call(ctx)
		if err != nil && ctx.Err() == nil {
			// The app's import trapped or exited: its failure, as a result
			// code would be.
			inst.close()
			return nil, &InitError{App: cfg.App, Export: init, Trap: describeCallError(err), Output: startup.String()}
		}
		if err != nil {
			return fail("sandbox: %s of %s: %v", init, cfg.App, describeCallError(err))
		}
		if code := int32(res[0]); code != hostabi.InitOK {
			inst.close()
			return nil, &InitError{App: cfg.App, Export: init, Result: code, Output: startup.String()}
		}
		if from != asBase {
			e.started.Add(1)
		}
	}
	inst.log = cfg.Log
	return inst, nil
}

// appFS is the guest file system of an instance of cfg (ABI.md "Guest
// file system"), with the table of the files it may lock; for a base image
// (asBase), its data folder is read-only and without a quota.
func (e *Engine) appFS(cfg AppConfig, asBase bool) (wazero.FSConfig, *hostabi.FileLocks) {
	files, locks := &fileBudget{}, hostabi.NewFileLocks()
	fsc := mount(wazero.NewFSConfig(), newConfinedFS(e.interp.LibDir(), false, files, locks), pythonwasi.GuestLibDir)
	if cfg.Dir != "" {
		fsc = mount(fsc, newConfinedFS(cfg.Dir, false, files, locks), GuestAppDir)
	}
	if cfg.DataDir != "" {
		// A base image is made on an empty folder, read-only.
		data := newConfinedFS(cfg.DataDir, !asBase, files, locks)
		if cfg.DataMaxBytes > 0 && !asBase {
			data.fs = &quotaFS{FS: data.fs, q: e.dataQuota(cfg.DataDir, cfg.DataMaxBytes), log: cfg.Log}
		}
		fsc = mount(fsc, data, GuestDataDir)
	}
	if e.zoneinfo != "" {
		fsc = mount(fsc, newConfinedFS(e.zoneinfo, false, files, locks), GuestZoneinfoDir)
	}
	if cfg.PycacheDir != "" {
		fsc = mount(fsc, newConfinedFS(cfg.PycacheDir, false, files, locks), GuestPycacheDir)
	}
	// Last, so that the other mounts keep their descriptor numbers.
	fsc = mount(fsc, devFS{}, GuestDevDir)
	return fsc.WithFSMount(caCertsFS, GuestCACertsDir), locks
}

// GuestCACertsDir holds a placeholder of the system's CA bundle,
// ca-certificates.crt, so that code that checks the file exists
// (requests) goes on to load it, which the guest's ssl takes as "use the
// host's trust store" (ABI.md "Guest file system").
const GuestCACertsDir = "/etc/ssl/certs"

//go:embed sslcerts/ca-certificates.crt
var caCertsEmbed embed.FS

// caCertsFS is the guest's GuestCACertsDir: ca-certificates.crt only.
var caCertsFS = func() fs.FS {
	sub, err := fs.Sub(caCertsEmbed, "sslcerts")
	if err != nil {
		panic(err) // the embedded folder is there by construction
	}
	return sub
}()

// InitError is a wsgi_init, wsgi_init_base or wsgi_init_app that returned
// a failure (ABI.md "wsgi_init"): the interpreter did not start, or the
// bootstrap or the app's import raised; or that trapped or exited (Trap).
// Output is what the guest printed.
type InitError struct {
	App    string
	Export string
	Result int32
	Trap   error // the trap or exit, when the export did not return
	Output string
}

func (e *InitError) Error() string {
	var msg string
	if e.Trap != nil {
		msg = fmt.Sprintf("sandbox: %s of %s: %v", e.Export, e.App, e.Trap)
	} else {
		msg = fmt.Sprintf("sandbox: %s of %s failed (result %d)", e.Export, e.App, e.Result)
	}
	if e.Output != "" {
		msg += ":\n" + e.Output
	}
	return msg
}

// Unwrap is the trap or exit (an *ExitError for os._exit), if any.
func (e *InitError) Unwrap() error { return e.Trap }

// resume finishes a restore: the memory already holds the image (the app's
// snapshot or a base image); grow it to the image's size, set the globals,
// and let the guest reseed.
func (e *Engine) resume(ctx context.Context, inst *Instance, snap *Snapshot) error {
	mem := inst.mod.Memory()
	if have := uint64(mem.Size()); have < snap.memSize {
		if _, ok := mem.Grow(uint32((snap.memSize - have) / wasmPage)); !ok {
			return fmt.Errorf("sandbox: grow memory to the snapshot's %d bytes", snap.memSize)
		}
	}
	if err := restoreGlobals(inst.mod, inst.globalNames, snap.globals); err != nil {
		return err
	}
	res, err := inst.mod.ExportedFunction(hostabi.ExportAfterRestore).Call(ctx)
	if err != nil {
		return fmt.Errorf("sandbox: wsgi_after_restore: %w", describeCallError(err))
	}
	if code := int32(res[0]); code != hostabi.SnapshotOK {
		return fmt.Errorf("sandbox: wsgi_after_restore failed (result %d)", code)
	}
	return nil
}

// callContext carries the instance's interrupter, logger, connections and
// lock table into a call.
func (i *Instance) callContext(ctx context.Context) context.Context {
	ctx = hostabi.WithConns(hostabi.WithInterrupter(ctx, i.interrupt), i.conns)
	ctx = hostabi.WithFileLocks(ctx, i.locks)
	if i.log != nil {
		ctx = hostabi.WithLogger(ctx, i.log.abi())
	}
	return ctx
}

// Outcome is how one wsgi_handle call ended.
type Outcome struct {
	// Result is the wsgi_handle result; meaningless when Err is set.
	Result int32
	// Err is a trap, a proc_exit or a deadline; the instance is then closed.
	Err error
	// GuestTime is how long the wsgi_handle call took, host functions it
	// called included; the rest of a request's time is the host's own.
	GuestTime time.Duration
}

// Reusable reports whether the instance may serve another request.
func (o Outcome) Reusable() bool {
	return o.Err == nil && o.Result != hostabi.HandleReplace && o.Result != hostabi.HandleNotReady
}

// Serve runs wsgi_handle for the request in x. The log receives the
// guest's log_write calls during it.
func (i *Instance) Serve(ctx context.Context, x *hostabi.Exchange, log GuestLog) Outcome {
	ctx = hostabi.WithInterrupter(hostabi.WithExchange(ctx, x), i.interrupt)
	ctx = hostabi.WithFileLocks(hostabi.WithConns(ctx, i.conns), i.locks)
	if log != nil {
		ctx = hostabi.WithLogger(ctx, log.abi())
	}
	if i.gate != nil && i.served.Load() == 0 {
		// Restored without a write set: the first request takes the faults.
		if i.recording != nil {
			i.recording.idle(false)
			defer i.recording.idle(true)
		}
		turn, err := i.gate.acquire(ctx)
		if err != nil {
			i.close()
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w: %w", ErrDeadline, err)
			}
			return Outcome{Err: fmt.Errorf("sandbox: waiting for a turn without a write set: %w", err)}
		}
		defer turn()
	}
	i.served.Add(1)
	release := i.interrupt.watch(ctx)
	i.interrupt.request = x
	start := time.Now()
	i.running.Add(1)
	res, err := i.handle.Call(ctx)
	i.running.Add(-1)
	guestTime := time.Since(start)
	i.interrupt.request = nil
	release()
	if err != nil {
		i.close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, ErrDeadline) {
			err = fmt.Errorf("%w: %w", ErrDeadline, err)
		}
		return Outcome{Err: describeCallError(err), GuestTime: guestTime}
	}
	o := Outcome{Result: int32(res[0]), GuestTime: guestTime}
	if !o.Reusable() {
		i.broken.Store(true)
	}
	return o
}

// MemoryPeak is the largest size the instance's linear memory has had.
func (i *Instance) MemoryPeak() uint64 { return i.peak.Load() }

// Resident is the instance's memory in RAM when last measured (after it
// started and after its first request, then at most once a second as it
// serves). Before a measure, or where the kernel does not tell, all of its
// linear memory counts as private.
func (i *Instance) Resident() Resident {
	if r := i.resident.Load(); r != nil {
		return r.Resident
	}
	return Resident{Private: i.peak.Load()}
}

// MeasureResident refreshes Resident if forced or over a second old. It
// must not run while the instance serves (the memory may grow meanwhile).
func (i *Instance) MeasureResident(force bool) {
	if r := i.resident.Load(); !force && r != nil && time.Since(r.at) < time.Second {
		return
	}
	r, err := i.mem.resident()
	if err != nil {
		r = Resident{Private: i.peak.Load()}
	}
	i.resident.Store(&residentAt{r, time.Now()})
}

// Broken reports whether the instance trapped, exited or asked to be
// replaced; a broken instance must not be used again.
func (i *Instance) Broken() bool { return i.broken.Load() }

// Close releases the instance.
func (i *Instance) Close(ctx context.Context) error {
	i.close()
	return nil
}

func (i *Instance) close() {
	i.broken.Store(true)
	if i.recording != nil {
		i.recording.finish()
	}
	if i.interrupt != nil {
		i.interrupt.detach()
	}
	i.mod.Close(context.Background())
	i.conns.Close()
	i.locks.Close()
}

// OpenConnections is the number of outbound connections the instance holds
// open.
func (i *Instance) OpenConnections() int { return i.conns.Open() }

// ExitError is returned when the guest called proc_exit (os._exit).
type ExitError struct{ Code uint32 }

func (e *ExitError) Error() string { return fmt.Sprintf("sandbox: guest exited with code %d", e.Code) }

func describeCallError(err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return &ExitError{Code: exit.ExitCode()}
	}
	return err
}

// reactor prepares (makeRestorable) and compiles the reactor module once,
// and checks it against the ABI.
func (e *Engine) reactor(ctx context.Context) (*restorable, wazero.CompiledModule, error) {
	e.reactorOnce.Do(func() {
		bin, err := os.ReadFile(e.reactorPath)
		if err != nil {
			e.reactorErr = fmt.Errorf("sandbox: read module: %w", err)
			return
		}
		e.reactorSum = sha256.Sum256(bin)
		r, err := makeRestorable(bin)
		if err != nil {
			e.reactorErr = fmt.Errorf("sandbox: %s: %w", e.reactorPath, err)
			return
		}
		m, err := e.compileBinary(ctx, filepath.Base(e.reactorPath), r.module)
		if err == nil {
			err = hostabi.Validate(m)
		}
		e.reactorImg, e.reactorMod, e.reactorErr = r, m, err
	})
	return e.reactorImg, e.reactorMod, e.reactorErr
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct {
	b []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	const max = 64 << 10
	if room := max - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// mount adds a file system of the runtime's own at guestPath.
func mount(c wazero.FSConfig, fs experimentalsys.FS, guestPath string) wazero.FSConfig {
	return c.(sysfs.FSConfig).WithSysFSMount(fs, guestPath)
}

// guestArgs are the WASI arguments wsgi_init reads (ABI.md "wsgi_init").
func guestArgs(cfg AppConfig) []string {
	args := []string{"wsgi-wasm", cfg.App, GuestAppDir}
	if cfg.Validate {
		args = append(args, "validate")
	}
	for _, p := range cfg.PythonPath {
		args = append(args, "path="+p)
	}
	return args
}
