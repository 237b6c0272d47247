// Command snapbench measures snapshot-restore and writes
// benchmarks/SNAPSHOTS.md: how long an idle tenant takes to its first
// response, what one more instance costs in memory, and how many warm
// Flask tenants fit in 8 GiB. Every figure in that file is written here,
// from measurements of this run. `make bench-snapshots` runs it; a smoke
// test runs it small.
//
// It measures the shipped configuration: the reactor with its interrupt
// checks, the default policy's limits, snapshots on, each a whole image of
// its own; and, beside it, snapshots made from the shared base image
// (serve --snapshot-base). The tenants are copies of
// examples/tenants/flask (vendored by examples/vendor.sh).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
	"github.com/wsgi-wasm/wsgi-wasm/server"
)

// Params size a run.
type Params struct {
	FlaskDir    string // the example Flask tenant
	Out         string // the Markdown file to write
	Restores    int    // restores per mapping mode
	Rounds      int    // rounds of idle tenants served before
	MemSamples  int    // instances whose memory is read, per mode
	Tenants     int    // idle tenants requested once each, snapshots on
	FreshTenant int    // idle tenants requested once each, snapshots off
	Checkpoints []int  // tenant counts at which the process's memory is read
	WorkDir     string // tenant trees and snapshots; removed after
	Command     string // how the run was started, for the report
}

func main() {
	p := Params{}
	flag.StringVar(&p.FlaskDir, "flask", "examples/tenants/flask", "the example Flask tenant folder")
	flag.StringVar(&p.Out, "out", "benchmarks/SNAPSHOTS.md", "report to write")
	flag.IntVar(&p.Restores, "restores", 200, "restores per mapping mode")
	flag.IntVar(&p.Rounds, "rounds", 3, "rounds over the idle tenants once they have served")
	flag.IntVar(&p.MemSamples, "mem-samples", 5, "instances whose memory is read, per mode")
	flag.IntVar(&p.Tenants, "tenants", 100, "idle Flask tenants, snapshots on")
	flag.IntVar(&p.FreshTenant, "fresh-tenants", 10, "idle Flask tenants, snapshots off")
	checkpoints := flag.String("checkpoints", "0,25,50,100", "tenant counts at which to read the process's memory")
	flag.Parse()
	for _, s := range strings.Split(*checkpoints, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "snapbench: -checkpoints:", err)
			os.Exit(2)
		}
		p.Checkpoints = append(p.Checkpoints, n)
	}
	p.Command = "go run ./benchmarks/snapbench " + strings.Join(os.Args[1:], " ")
	if err := Run(context.Background(), p, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "snapbench:", err)
		os.Exit(1)
	}
}

// Run measures and writes the report.
func Run(ctx context.Context, p Params, progress io.Writer) error {
	if p.WorkDir == "" {
		dir, err := os.MkdirTemp("", "snapbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		p.WorkDir = dir
	}
	interp, err := pythonwasi.Locate("")
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "snapbench: "+format+"\n", args...) }
	r := &report{params: p, interp: interp}

	logf("restore and memory, per mapping mode (%d restores each)", p.Restores)
	if err := r.measureRestores(ctx, logf); err != nil {
		return err
	}
	logf("idle tenants to first response: %d with snapshots, %d without", p.Tenants, p.FreshTenant)
	if err := r.measureTenants(ctx, logf); err != nil {
		return err
	}
	return os.WriteFile(p.Out, []byte(r.markdown()), 0o644)
}

type report struct {
	params Params
	interp pythonwasi.Interpreter

	fresh         startFigures
	modes         []startFigures
	writeSetPages int
	snapBytes     int64 // apparent size of the Flask snapshot (shipped: an image of its own)
	snapDisk      int64 // its blocks on disk
	buildTime     time.Duration
	fromBaseBytes int64 // the Flask snapshot made from the base image: apparent size
	fromBaseDisk  int64 // its blocks on disk
	fromBaseTime  time.Duration
	sharedBytes   uint64 // of it, mapped from the base image
	baseBytes     int64  // the base image's apparent size
	baseDisk      int64  // its blocks on disk

	shipped, shared serverFigures
	warmedFirst     tenantsRun // first request since the build, with a warm-up path
	off             tenantsRun // snapshots off
}

// tenantsRun is one pass over a tree of idle tenants, each requested once.
type tenantsRun struct {
	times    []time.Duration // to each tenant's first response
	density  []densityPoint  // as tenants got their first request
	readBack uint64          // bytes the machine read from disk meanwhile
}

// serverFigures are idle tenants' first responses through the server, with
// one way of making snapshots.
type serverFigures struct {
	first tenantsRun   // first request since the snapshots were built
	again []tenantsRun // per round, served before
}

// startFigures are one way of starting a Flask instance.
type startFigures struct {
	name                  string
	shipped               bool            // the shipped way: private mapping, write set, an image of its own
	base                  bool            // the shipped way, but the snapshot made from a shared base image
	start, first          []time.Duration // to ready; from ready to the end of the first response
	before, after1, after []sandbox.MemoryUsage
}

// densityPoint is the process's memory with tenants warm tenants, from
// /proc/self/smaps_rollup. PSS counts a page mapped by many instances
// once, where RSS counts it once per mapping: the base image's pages are
// mapped by every tenant's instance.
type densityPoint struct {
	tenants                 int
	rss, pss, anon, filePSS uint64
}

func newEngine(ctx context.Context, interp pythonwasi.Interpreter, mode sandbox.SnapshotMapping) (*sandbox.Engine, error) {
	return sandbox.New(ctx, sandbox.Options{Interpreter: interp, SnapshotMapping: mode, Logger: slog.New(slog.DiscardHandler)})
}

func (r *report) measureRestores(ctx context.Context, logf func(string, ...any)) error {
	p := r.params
	eng, err := newEngine(ctx, r.interp, sandbox.MapPrivate)
	if err != nil {
		return err
	}
	defer eng.Close(ctx)
	pyc, err := eng.CompileApp(ctx, p.FlaskDir, 0)
	if err != nil {
		return err
	}
	cfg := sandbox.AppConfig{App: "app:app", Dir: p.FlaskDir, PycacheDir: pyc, MemoryLimit: uint64(policies.Presets["default"].MemoryMB) << 20}
	store, err := sandbox.NewSnapshotStore(filepath.Join(p.WorkDir, "single"))
	if err != nil {
		return err
	}
	defer store.Close()
	baseStore, err := sandbox.NewSnapshotStore(filepath.Join(p.WorkDir, "single-base"), sandbox.WithSharedBase())
	if err != nil {
		return err
	}
	defer baseStore.Close()

	r.fresh = startFigures{name: "fresh start (no snapshot)"}
	for i := 0; i < max(3, p.MemSamples); i++ {
		start := time.Now()
		inst, err := eng.NewInstance(ctx, cfg)
		if err != nil {
			return err
		}
		r.fresh.start = append(r.fresh.start, time.Since(start))
		if err := r.fresh.serve(inst, i < p.MemSamples); err != nil {
			return err
		}
		inst.Close(ctx)
	}
	start := time.Now()
	key, err := store.Build(ctx, eng, cfg)
	if err != nil {
		return err
	}
	r.buildTime = time.Since(start)
	// The base image first (by a build of the app under another key), so
	// that the build time is the tenant's own.
	other := cfg
	other.Env = map[string]string{"SNAPBENCH": "makes the base image"}
	if _, err := baseStore.Build(ctx, eng, other); err != nil {
		return err
	}
	start = time.Now()
	baseKey, err := baseStore.Build(ctx, eng, cfg)
	if err != nil {
		return err
	}
	r.fromBaseTime = time.Since(start)
	r.snapBytes, r.snapDisk = fileSize(store.Path(key))
	r.fromBaseBytes, r.fromBaseDisk = fileSize(baseStore.Path(baseKey))
	if bases, _ := filepath.Glob(filepath.Join(baseStore.Dir(), "base-*.snap")); len(bases) == 1 {
		r.baseBytes, r.baseDisk = fileSize(bases[0])
	}
	rows := []struct {
		mode           sandbox.SnapshotMapping
		writeSet, base bool
	}{{sandbox.MapPrivate, false, false}, {sandbox.MapPrivate, true, false}, {sandbox.MapPrivatePopulate, false, false}, {sandbox.CopyImage, false, false}, {sandbox.MapPrivate, true, true}}
	for _, row := range rows {
		meng := eng
		if row.mode != sandbox.MapPrivate {
			if meng, err = newEngine(ctx, r.interp, row.mode); err != nil {
				return err
			}
		}
		snap, err := store.Open(key)
		if row.base {
			snap, err = baseStore.Open(baseKey)
		}
		if err != nil {
			return err
		}
		if row.base {
			r.sharedBytes = snap.SharedBytes()
		}
		name := "restore, " + row.mode.String()
		if row.writeSet {
			// What a pool does after the first restored instance's first
			// request; the rows before were measured without a write set.
			if err := recordWriteSet(ctx, meng, cfg, snap); err != nil {
				return err
			}
			if row.base {
				name += " + write set, shared base (--snapshot-base)"
			} else {
				r.writeSetPages = snap.WriteSetPages()
				name += " + write set (shipped)"
			}
		} else if row.mode == sandbox.MapPrivate {
			name += ", no write set yet"
		}
		f := startFigures{name: name, shipped: row.writeSet && !row.base, base: row.base}
		for i := 0; i < p.Restores; i++ {
			start := time.Now()
			inst, err := meng.Restore(ctx, cfg, snap)
			if err != nil {
				return err
			}
			f.start = append(f.start, time.Since(start))
			if err := f.serve(inst, i < p.MemSamples); err != nil {
				return err
			}
			inst.Close(ctx)
		}
		logf("%s: restore p50 %v, first response p50 %v", f.name, pct(f.start, 50), pct(f.first, 50))
		r.modes = append(r.modes, f)
		if meng != eng {
			meng.Close(ctx)
		}
	}
	return nil
}

// recordWriteSet restores one instance, serves it one request and records
// the pages it wrote as the snapshot's write set.
func recordWriteSet(ctx context.Context, eng *sandbox.Engine, cfg sandbox.AppConfig, snap *sandbox.Snapshot) error {
	inst, err := eng.Restore(ctx, cfg, snap)
	if err != nil {
		return err
	}
	defer inst.Close(ctx)
	if err := get(inst, "/"); err != nil {
		return err
	}
	if err := inst.RecordWriteSet(); err != nil {
		return err
	}
	if snap.WriteSetPages() == 0 {
		return fmt.Errorf("no write set recorded")
	}
	return nil
}

// serve sends the first request, then 99 more, reading memory on the way
// when measure is set.
func (f *startFigures) serve(inst *sandbox.Instance, measure bool) error {
	read := func(dst *[]sandbox.MemoryUsage) error {
		if !measure {
			return nil
		}
		u, err := inst.MemoryUsage()
		*dst = append(*dst, u)
		return err
	}
	if err := read(&f.before); err != nil {
		return err
	}
	start := time.Now()
	if err := get(inst, "/"); err != nil {
		return err
	}
	f.first = append(f.first, time.Since(start))
	if err := read(&f.after1); err != nil {
		return err
	}
	if !measure {
		return nil
	}
	for i := 0; i < 99; i++ {
		if err := get(inst, "/json?x="+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return read(&f.after)
}

func get(inst *sandbox.Instance, path string) error {
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, httptest.NewRequest("GET", path, nil), pool.RequestInfo{}, nil)
	if o.Err != nil || rec.Code != 200 {
		return fmt.Errorf("GET %s: %d %v %s", path, rec.Code, o.Err, rec.Body)
	}
	return nil
}

// measureTenants serves a tree of idle Flask tenants and requests each
// once: the time to its first response, and the process's memory as warm
// tenants accumulate.
func (r *report) measureTenants(ctx context.Context, logf func(string, ...any)) error {
	p := r.params
	var err error
	ways := []struct {
		way
		figs *serverFigures
	}{{way{name: "on", snapshots: true}, &r.shipped}, {way{name: "on, shared base", snapshots: true, base: true}, &r.shared}}
	for _, c := range ways {
		if c.figs.first, err = r.tenantRun(ctx, c.way, p.Tenants, logf); err != nil {
			return err
		}
	}
	// The first request since the build again, of tenants that set a
	// warm-up path: the server records their write sets before it.
	if r.warmedFirst, err = r.tenantRun(ctx, way{name: "on, warm-up", snapshots: true, warmup: "/"}, p.Tenants, logf); err != nil {
		return err
	}
	// The same tenants idle again, having served: each round a new server
	// on the same snapshot folder (as after a restart), whose pools have
	// none of their instances left but whose snapshots have write sets.
	// The two ways take turns, so that neither has the machine's memory in
	// a better state (pages the host has already backed) throughout.
	for range max(p.Rounds, 1) {
		slices.Reverse(ways) // each way goes first every other round
		for _, c := range ways {
			run, err := r.tenantRun(ctx, c.way, p.Tenants, logf)
			if err != nil {
				return err
			}
			c.figs.again = append(c.figs.again, run)
		}
	}
	r.off, err = r.tenantRun(ctx, way{name: "off"}, p.FreshTenant, logf)
	return err
}

// way is how a tree of idle tenants is served.
type way struct {
	name      string
	snapshots bool   // snapshots on
	base      bool   // made from a shared base image
	warmup    string // the tenants' warm-up path (tenant.toml's warmup), if any
}

// tenantRun serves n idle tenants in the tree named for w (made on first
// use) the way w says.
func (r *report) tenantRun(ctx context.Context, w way, n int, logf func(string, ...any)) (tenantsRun, error) {
	p := r.params
	name, snapshots := w.name, w.snapshots
	tree := filepath.Join(p.WorkDir, "tree-"+strings.NewReplacer(" ", "", ",", "-").Replace(name))
	_, err := os.Stat(tree)
	again := err == nil
	for i := 0; i < n && !again; i++ {
		if err := copyTenant(p.FlaskDir, filepath.Join(tree, fmt.Sprintf("t%03d", i)), fmt.Sprintf("t%03d.test", i), w.warmup); err != nil {
			return tenantsRun{}, err
		}
	}
	eng, err := newEngine(ctx, r.interp, sandbox.MapPrivate)
	if err != nil {
		return tenantsRun{}, err
	}
	defer eng.Close(ctx)
	if again {
		name += ", served before"
	}
	cfg := server.Config{TenantDir: tree, Ceiling: policies.DefaultCeiling, MemoryBudget: 1 << 40}
	if snapshots {
		var opts []sandbox.StoreOption
		if w.base {
			opts = append(opts, sandbox.WithSharedBase())
		}
		store, err := sandbox.NewSnapshotStore(filepath.Join(p.WorkDir, "snapshots-"+filepath.Base(tree)), opts...)
		if err != nil {
			return tenantsRun{}, err
		}
		defer store.Close()
		cfg.Snapshots = store
	}
	srv, err := server.New(ctx, eng, cfg)
	if err != nil {
		return tenantsRun{}, err
	}
	defer srv.Close()
	if snapshots {
		start := time.Now()
		if _, err := srv.BuildSnapshots(ctx); err != nil {
			return tenantsRun{}, err
		}
		logf("%d snapshots built or opened in %v", n, time.Since(start).Round(time.Second))
		settle()
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	client := &http.Client{}
	var times []time.Duration
	var points []densityPoint
	checkpoint := func(done int) {
		if slices.Contains(p.Checkpoints, done) || (done == n && !snapshots) || done == 0 {
			points = append(points, processMemory(done))
		}
	}
	checkpoint(0)
	reads := diskReads()
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", hs.URL+"/", nil)
		req.Host = fmt.Sprintf("t%03d.test", i)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return tenantsRun{}, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		times = append(times, time.Since(start))
		if resp.StatusCode != 200 {
			return tenantsRun{}, fmt.Errorf("tenant %d: status %d", i, resp.StatusCode)
		}
		checkpoint(i + 1)
	}
	readBack := diskReads() - reads
	logf("snapshots %s: first response p50 %v p99 %v over %d tenants, %.1f MiB read from disk", name, pct(times, 50), pct(times, 99), n, float64(readBack)/(1<<20))
	return tenantsRun{times: times, density: points, readBack: readBack}, nil
}

// diskReads is how many bytes the machine has read from disk into memory
// since it started (/proc/vmstat pgpgin, in KiB), or 0 if unknown. Where
// the machine pages out file pages no process maps once they are cold (see
// guestMemoryFacts), an idle tenant's snapshot can have to come back from
// disk.
func diskReads() uint64 {
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "pgpgin "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n << 10
		}
	}
	return 0
}

// settle lets the machine catch up with a build before measuring: the
// snapshot files written back to disk and the memory the build freed
// handed back (the balloon reports free pages to the host within seconds).
// A server's first requests come a while after its background builds; a
// request measured meanwhile pays for the writeback and the page reporting
// beside it, by how much depends on the build before.
func settle() {
	unix.Sync()
	time.Sleep(settleTime)
}

// settleTime is how long settle waits after the disk writes.
const settleTime = 3 * time.Second

// copyTenant copies the Flask tenant with its own hosts, no warm instance
// until its first request, and warmup as its warm-up path if not empty.
func copyTenant(src, dst, host, warmup string) error {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if rel == "tenant.toml" || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		return err
	}
	toml := fmt.Sprintf("app = \"app:app\"\nhosts = [%q]\n", host)
	if warmup != "" {
		toml += fmt.Sprintf("warmup = %q\n", warmup)
	}
	toml += "\n[pool]\nmin_warm = 0\n"
	return os.WriteFile(filepath.Join(dst, "tenant.toml"), []byte(toml), 0o644)
}

// processMemory reads this process's memory after a collection.
func processMemory(tenants int) densityPoint {
	goruntime.GC()
	debug.FreeOSMemory()
	pt := densityPoint{tenants: tenants}
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		return pt
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		switch name {
		case "Rss":
			pt.rss = kb << 10
		case "Pss":
			pt.pss = kb << 10
		case "Pss_Anon":
			pt.anon = kb << 10
		case "Pss_File":
			pt.filePSS = kb << 10
		}
	}
	return pt
}

// fileSize is a file's apparent size and the room it takes on disk.
func fileSize(path string) (size, disk int64) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0
	}
	return st.Size(), diskBytes(st)
}
