package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/guestprof"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// EnvGuestProfile names the folder TestGuestProfile writes its pprof
// profiles into; the test is skipped without it. EnvProfileReport is where
// it writes the reading (PROFILE.md in this folder if unset).
const (
	// EnvGuestProfile: where the profiles go.
	EnvGuestProfile  = "GUESTPROF_DIR"
	EnvProfileReport = "GUESTPROF_REPORT"
)

// groups sorts functions into kinds of work by name, first match wins.
var groups = []struct{ name, pattern string }{
	{"eval loop (`_PyEval_EvalFrameDefault`)", `^_PyEval_EvalFrameDefault$`},
	{"host functions (WASI, host ABI)", `\.`},
	{"garbage collector", `^gc_|_traverse$|^visit_`},
	{"memory: allocation, deallocation, reference counting", `(?i)malloc|free|realloc|alloc|dealloc|GC_New|GC_Del|NewReference|_Clear$`},
	{"dicts and attribute lookup", `(?i)dict|unicodekeys|getattr|find_name_in_mro|lookup`},
	{"calls (vectorcall, frames, arguments)", `(?i)call|frame|vectorcall|args`},
	{"strings", `(?i)unicode|asciilib|ucs[124]lib|str|replace|join|encode|decode|scan`},
	{"integers and floats", `(?i)long|x_add|x_sub|float|dtoa`},
}

func groupShares(rows []guestprof.Row) map[string]float64 {
	out := map[string]float64{}
next:
	for _, r := range rows {
		for _, g := range groups {
			if regexp.MustCompile(g.pattern).MatchString(r.Name) {
				out[g.name] += r.Flat
				continue next
			}
		}
		out["other"] += r.Flat
	}
	return out
}

// isCheckIn reports whether a function is the interrupt check-in: every
// 2 ms (sandbox preemptTick) the guest calls it and it yields the goroutine
// (runtime.Gosched), so its samples are time waiting for a CPU, not guest
// work; the tables leave them out and give their share apart.
func isCheckIn(name string) bool { return name == "wsgi_host.interrupt" }

// profWorkloads are the speed workloads profiled (python-wasi/bench).
var profWorkloads = []string{"loops", "json", "template"}

// cpuSelf is this process's CPU time so far.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestGuestProfile profiles the guest's time by wasm function
// (internal/guestprof) for a hello-Flask request served by an instance and
// for speed workloads, measures what the profiler costs the guest and what
// a hello-Flask request costs inside the guest against the bare app call,
// and writes the profiles and PROFILE.md (`make profile-guest`, or
// GUESTPROF_DIR=/some/folder go test ./benchmarks -run TestGuestProfile -v).
// The named copy of the interpreter is kept in the user's cache folder
// (wsgi-wasm/guestprof).
func TestGuestProfile(t *testing.T) {
	out := os.Getenv(EnvGuestProfile)
	if out == "" {
		t.Skipf("set %s to a folder to write guest profiles", EnvGuestProfile)
	}
	report := os.Getenv(EnvProfileReport)
	if report == "" {
		report = "PROFILE.md"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := testinterp.Require(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	named, err := guestprof.NamedInterpreter(in, filepath.Join(cache, "wsgi-wasm", "guestprof", "named-"+filepath.Base(in.Dir)))
	if err != nil {
		t.Fatal(err)
	}
	busy0, self0, wall0 := busySeconds(), cpuSelf(), time.Now()

	// The tenant folder: the example Flask app and the bare-call wrapper.
	app := t.TempDir()
	if err := os.CopyFS(app, os.DirFS(flaskDir)); err != nil {
		t.Fatal(err)
	}
	bare, err := os.ReadFile("testdata/flaskbare/bare.py")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "bare.py"), bare, 0o644); err != nil {
		t.Fatal(err)
	}

	prof := guestprof.New(0)
	newEngine := func(ctx context.Context) *sandbox.Engine {
		e, err := sandbox.New(ctx, sandbox.Options{Interpreter: named, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(context.Background()) })
		return e
	}
	plainEng, profEng := newEngine(ctx), newEngine(prof.Context(ctx))
	newInst := func(ctx context.Context, e *sandbox.Engine) *sandbox.Instance {
		pyc, err := e.CompileApp(ctx, app, 0)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := e.NewInstance(ctx, sandbox.AppConfig{App: "bare:app", Dir: app, PycacheDir: pyc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close(context.Background()) })
		return inst
	}
	plain, profiled := newInst(ctx, plainEng), newInst(prof.Context(ctx), profEng)

	// guestPerRequest is the best over rounds of the mean guest time of a
	// hello-Flask request.
	hello := httptest.NewRequest("GET", "/", nil)
	guestPerRequest := func(inst *sandbox.Instance, rounds, n int) time.Duration {
		var means []time.Duration
		for r := 0; r < rounds; r++ {
			var g time.Duration
			for i := 0; i < n; i++ {
				rec := httptest.NewRecorder()
				o := pool.ServeInstance(inst, rec, hello, pool.RequestInfo{}, nil)
				if o.Err != nil || rec.Code != 200 || rec.Body.String() != "Hello from Flask!\n" {
					t.Fatalf("status %d, err %v: %.200s", rec.Code, o.Err, rec.Body.String())
				}
				g += o.GuestTime
			}
			means = append(means, g/time.Duration(n))
		}
		return slices.Min(means)
	}
	bareCall := func(inst *sandbox.Instance, n int) time.Duration {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/bare?n="+strconv.Itoa(n), nil)
		if o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, nil); o.Err != nil || rec.Code != 200 {
			t.Fatalf("bare loop: status %d, err %v: %.300s", rec.Code, o.Err, rec.Body.String())
		}
		ns, err := strconv.ParseInt(rec.Body.String(), 10, 64)
		if err != nil {
			t.Fatalf("bare loop answered %q", rec.Body.String())
		}
		return time.Duration(ns)
	}

	// Served and bare in alternating rounds, so that the other load on the
	// machine falls on both alike; the best round of each is compared.
	guestPerRequest(plain, 1, 200) // warm
	bareCall(plain, 100)
	var serveds, bares []time.Duration
	for i := 0; i < 21; i++ {
		serveds = append(serveds, guestPerRequest(plain, 1, 300))
		bares = append(bares, bareCall(plain, 300))
	}
	slices.Sort(serveds)
	slices.Sort(bares)
	served, bareNS := serveds[0], bares[0]
	t.Logf("hello Flask: %v guest time per served request, %v per bare app call in the guest (best rounds; medians %v, %v)",
		served, bareNS, serveds[10], bares[10])

	type result struct {
		name, what       string
		plain, profiled  time.Duration
		stats            guestprof.Stats
		flat, cum, corr  []guestprof.Row
		groups, groupsC  map[string]float64 // share by kind of work, as sampled and corrected
		perEvent         time.Duration
		interrupt        float64 // share of samples in wsgi_host.interrupt
		profile, figures string
	}
	var results []result
	// save writes the profile and fills r's figures; runs is how many times
	// the profiled stretch ran what r.plain times. perEvent, if not 0, is
	// the listener's cost per event to use instead of r's own estimate.
	save := func(r *result, runs int, perEvent time.Duration) {
		p := prof.Profile()
		path := filepath.Join(out, r.name+".pb.gz")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Write(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		r.profile, r.stats = path, prof.Stats()
		r.flat, r.cum = guestprof.Top(p, 20, isCheckIn)
		all, _ := guestprof.Top(p, 0, nil)
		for _, row := range all {
			if isCheckIn(row.Name) {
				r.interrupt = row.Flat
			}
		}
		r.perEvent = perEvent
		if perEvent == 0 {
			r.perEvent = time.Duration(float64(r.profiled-r.plain) * float64(runs) / float64(r.stats.Events))
		}
		r.corr = prof.FlatCorrected(r.perEvent, 20, isCheckIn)
		allFlat, _ := guestprof.Top(p, 0, isCheckIn)
		r.groups, r.groupsC = groupShares(allFlat), groupShares(prof.FlatCorrected(r.perEvent, 0, isCheckIn))
		results = append(results, *r)
	}

	// The speed workloads, by the command module.
	runWorkload := func(e *sandbox.Engine, ctx context.Context, name string) time.Duration {
		var stdout, stderr bytes.Buffer
		code, err := e.RunCommand(ctx, sandbox.Command{Args: []string{"workloads.py", name, "3"},
			Dir: "../python-wasi/bench", Stdout: &stdout, Stderr: &stderr})
		if err != nil || code != 0 {
			t.Fatalf("workload %s: exit %d, %v: %s", name, code, err, stderr.String())
		}
		s, err := strconv.ParseFloat(strings.TrimSpace(stdout.String()), 64)
		if err != nil {
			t.Fatalf("workload %s printed %q", name, stdout.String())
		}
		return time.Duration(s * 1e9)
	}
	for _, w := range profWorkloads {
		base := runWorkload(plainEng, ctx, w)
		prof.Reset()
		prof.Start()
		slow := runWorkload(profEng, prof.Context(ctx), w)
		prof.Stop()
		base = min(base, runWorkload(plainEng, ctx, w)) // once before, once after
		save(&result{name: w, what: "python-wasi/bench/workloads.py " + w + " 3 (command module, start-up included in the profile)",
			plain: base, profiled: slow}, 3, 0)
		t.Logf("%s: %v plain, %v profiled", w, base, slow)
	}

	// The Flask request's own estimate of the cost per event would count
	// the time its 2 ms check-ins spend yielding, which the listener's
	// slowdown inflates; it takes the speed workloads' median instead.
	var costs []time.Duration
	for _, r := range results {
		costs = append(costs, r.perEvent)
	}
	slices.Sort(costs)
	guestPerRequest(profiled, 1, 20) // warm
	prof.Reset()
	prof.Start()
	profiledPer := guestPerRequest(profiled, 5, 300)
	prof.Stop()
	save(&result{name: "flask-hello", what: "hello-Flask request served by an instance (GET /, pool.ServeInstance)",
		plain: served, profiled: profiledPer}, 5*300, costs[len(costs)/2])
	results = append(results[len(results)-1:], results[:len(results)-1]...)

	wall := time.Since(wall0).Seconds()
	other := max(0, (busySeconds()-busy0-(cpuSelf()-self0).Seconds())/wall) // the two clocks differ by a tick

	var b strings.Builder
	b.WriteString("<!-- generated by `make profile-guest` (TestGuestProfile in benchmarks/profile_test.go); do not edit -->\n")
	b.WriteString("# Where the guest's time goes\n\n")
	fmt.Fprintf(&b, "Machine: %s. Other load on the machine during the run: %.2f cores on average (CPU time of everything but this test). ", machineLine(), other)
	b.WriteString("The machine is shared: the shares below are what matter, not the absolute times.\n\n")
	b.WriteString("## Method\n\n")
	b.WriteString("`internal/guestprof`: wazero v1.12.0's experimental function listeners on every function of the interpreter " +
		"(and of the host modules), with the optimizing compiler (listeners do not turn it off). The listener keeps a shadow call stack; " +
		"a ticker counts a mark every 1 ms, and the first call or return after marks records the stack of the function that was running " +
		"(the caller at a call, the returning function at a return), once per mark. Marks that fall outside any call into the guest are dropped. " +
		"The modules are the shipped `python-reactor.wasm` and `python.wasm` byte for byte plus a name section (the shipped ones are stripped; " +
		"the names come from the link output in `debug/`, optimised again with `wasm-opt -g`, whose function indices are checked to agree: " +
		"`guestprof.NamedInterpreter`).\n\n")
	b.WriteString("**Overhead.** Every call and return leaves the compiled code for Go, sampled or not. The table gives how much slower the guest runs " +
		"under the listener. That time is charged to the functions making and ending calls, so functions that make many short calls (the eval loop, " +
		"small helpers) are over-counted and long-running code without calls (loops inside one C function) under-counted; treat the shares as " +
		"\"where the guest's time goes, weighted towards call-heavy code\", good for ranking, not for exact fractions. " +
		"The middle column of each table takes that cost out, as an estimate: the cost per event is (time with the listener - time without) / events; " +
		"each function is charged one event for every call it makes and for each of its own returns (where a mark that arrives during the listener's " +
		"own work is recorded), and its flat time less events x cost, clamped at zero, is shared out again. It assumes every event costs the same.\n\n" +
		"**The 2 ms check-in.** The interrupt checks of both modules (the served instance's reactor and the workloads' command module) call " +
		"`wsgi_host.interrupt` every 2 ms (sandbox's preemptTick), which yields the goroutine (`runtime.Gosched`); on a busy machine the guest then " +
		"waits for a CPU inside that call. Those samples are wall time, not guest work: the tables leave them out and the last column gives their share. " +
		"The share is of the slowed, profiled guest: the listener stretches a request over more check-ins. For the same reason the Flask request's " +
		"cost per event is not its own estimate (which would count those waits) but the median of the speed workloads'.\n\n")
	b.WriteString("| workload | without listener | with listener | slowdown | listener events | cost per event | samples | dropped (outside the guest) | in the 2 ms check-in (yield) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		unit := "guest time per request, best round"
		if r.name != "flask-hello" {
			unit = "best of 3 runs; without listener: best of two such"
		}
		fmt.Fprintf(&b, "| %s (%s) | %v | %v | %.1fx | %d (%.0f M/s) | %d ns | %d | %d | %.1f%% |\n", r.name, unit, r.plain.Round(time.Microsecond), r.profiled.Round(time.Microsecond),
			float64(r.profiled)/float64(r.plain), r.stats.Events, float64(r.stats.Events)/r.stats.Wall.Seconds()/1e6, r.perEvent.Nanoseconds(), r.stats.Samples, r.stats.Dropped, 100*r.interrupt)
	}
	b.WriteString("\n## A hello-Flask request inside the guest: served against the bare app call\n\n")
	fmt.Fprintf(&b, "| | µs |\n| --- | ---: |\n| one served request, guest time (`wsgi_handle`: bootstrap.py's WSGI adapter, environ decoded from the host, response streamed through the host ABI) | %.1f |\n", float64(served.Nanoseconds())/1e3)
	fmt.Fprintf(&b, "| one bare `app(environ, start_response)` call in a loop inside the same guest (minimal environ, body joined, result closed; `benchmarks/testdata/flaskbare/bare.py`) | %.1f |\n", float64(bareNS.Nanoseconds())/1e3)
	fmt.Fprintf(&b, "| per-request glue (difference) | %.1f (%.0f%% of the served request) |\n\n", float64((served-bareNS).Nanoseconds())/1e3, 100*float64(served-bareNS)/float64(served))
	fmt.Fprintf(&b, "Both from the same instance without the listener, in 21 alternating rounds of 300, the best round of each (medians: %.1f and %.1f µs). "+
		"Both include the 2 ms check-ins' yields at the same rate per unit of time. On this shared machine the difference moves a lot from run to run.\n\n",
		float64(serveds[10].Nanoseconds())/1e3, float64(bares[10].Nanoseconds())/1e3)
	b.WriteString("## By kind of work\n\nFlat shares summed by function name (`groups` in profile_test.go), as sampled / with the listener's cost taken out.\n\n| kind |")
	for _, r := range results {
		b.WriteString(" " + r.name + " |")
	}
	b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(results)) + "\n")
	for _, g := range append(groups, struct{ name, pattern string }{"other", ""}) {
		b.WriteString("| " + g.name + " |")
		for _, r := range results {
			fmt.Fprintf(&b, " %.0f%% / %.0f%% |", 100*r.groups[g.name], 100*r.groupsC[g.name])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Reading\n\n")
	lo, hi := results[0], results[0]
	for _, r := range results {
		if float64(r.profiled)/float64(r.plain) < float64(lo.profiled)/float64(lo.plain) {
			lo = r
		}
		if float64(r.profiled)/float64(r.plain) > float64(hi.profiled)/float64(hi.plain) {
			hi = r
		}
	}
	fmt.Fprintf(&b, "- The listener slows the guest %.1fx (%s) to %.1fx (%s): calls and returns are what it costs, not the sampling. "+
		"Function listeners are usable as a profiler here (the optimizing compiler stays on, names resolve), but the as-sampled shares "+
		"over-weight call-heavy code; read the corrected column for size and the as-sampled one for what is certainly there.\n",
		float64(lo.profiled)/float64(lo.plain), lo.name, float64(hi.profiled)/float64(hi.plain), hi.name)
	fmt.Fprintf(&b, "- A hello-Flask request: %.0f µs in the guest, of which the bare app call is %.0f µs; the per-request glue "+
		"(bootstrap.py's adapter, environ, response through the host ABI) is the remaining %.0f%%.\n",
		float64(served.Nanoseconds())/1e3, float64(bareNS.Nanoseconds())/1e3, 100*float64(served-bareNS)/float64(served))
	for _, r := range results {
		var top []string
		for _, row := range r.corr[:min(3, len(r.corr))] {
			top = append(top, fmt.Sprintf("`%s` %.0f%%", row.Name, 100*row.Flat))
		}
		fmt.Fprintf(&b, "- %s: the eval loop's own code is %.0f%% (corrected; %.0f%% as sampled), memory management %.0f%% (%.0f%%); largest own shares: %s.\n",
			r.name, 100*r.groupsC[groups[0].name], 100*r.groups[groups[0].name], 100*r.groupsC[groups[3].name], 100*r.groups[groups[3].name], strings.Join(top, ", "))
	}
	b.WriteString("- The correction subtracts an average per-event cost, so small functions called very often (`PyObject_Malloc`, `PyObject_Free`, " +
		"`_Py_Dealloc`) can drop to zero though their work is real; their true share lies between the two columns.\n" +
		"- A wasm profile cannot split Python code: every Python function runs inside `_PyEval_EvalFrameDefault` and the C functions it calls, " +
		"so which Python lines of bootstrap.py, Flask or Werkzeug cost the most needs a Python-level profiler in the guest " +
		"(the bare-call comparison above is what separates the glue from the app).\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "## %s\n\n%s; %d samples. Profile: `%s.pb.gz` (`go tool pprof -top FILE`).\n\n", r.name, r.what, r.stats.Samples, r.name)
		b.WriteString("| # | function (flat, as sampled) | flat | function (flat, listener cost taken out) | flat | function (cumulative, as sampled) | cum |\n| ---: | --- | ---: | --- | ---: | --- | ---: |\n")
		row := func(rows []guestprof.Row, i int) guestprof.Row {
			if i < len(rows) {
				return rows[i]
			}
			return guestprof.Row{}
		}
		for i := range max(len(r.flat), len(r.cum), len(r.corr)) {
			f, k, c := row(r.flat, i), row(r.corr, i), row(r.cum, i)
			fmt.Fprintf(&b, "| %d | `%s` | %.1f%% | `%s` | %.1f%% | `%s` | %.1f%% |\n", i+1, f.Name, 100*f.Flat, k.Name, 100*k.Flat, c.Name, 100*c.Cum)
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(report, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s and the profiles in %s", report, out)
	if served <= bareNS || results[0].stats.Samples < 100 {
		t.Errorf("served request %v not above the bare call %v, or only %d samples", served, bareNS, results[0].stats.Samples)
	}
}
