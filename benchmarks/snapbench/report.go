package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// Targets of the snapshot work, checked in the reading.
const (
	targetFirstResponse = 5 * time.Millisecond
	targetExtraShare    = 0.25 // an extra instance after serving, of a fresh one
	targetTenants8GiB   = 500
	eightGiB            = 8 << 30
)

func (r *report) markdown() string {
	var b strings.Builder
	p := r.params
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Snapshot-restore: measured\n\n")
	w("Written by `benchmarks/snapbench` (`make bench-snapshots`) on %s; do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02"))
	w("- Machine: %s, %d cores, Linux %s, %s.\n", cpuModel(), goruntime.NumCPU(), kernel(), goruntime.Version())
	if facts := guestMemoryFacts(); len(facts) > 0 {
		w("- Guest memory: %s. A page the kernel hands out may then have to be faulted in by the host first, so page copies and zeroing (a restore's copy-on-write and fresh pages) are slower in bursts that come and go with the machine's memory history.\n",
			strings.Join(facts, "; "))
	}
	w("- Interpreter: %s (shipped reactor: interrupt checks on); default policy's memory limit.\n", r.interp.Dir)
	w("- App: `examples/tenants/flask` (Flask 2.2 from Debian), `GET /` (hello) then `GET /json?x=N`.\n")
	w("- Command: `%s`.\n\n", p.Command)

	w("## One tenant: start and memory\n\n")
	w("The Flask snapshot (shipped: an image of its own) is %s, %s on disk (all-zero pages are holes); building it (a fresh start, then the save) took %s. ",
		mib(uint64(r.snapBytes)), mib(uint64(r.snapDisk)), r.buildTime.Round(time.Millisecond))
	w("With `--snapshot-base`, the base image (the interpreter started, with the standard library modules every tenant shares imported; ABI.md \"Base images\") is %s, %s on disk, ",
		mib(uint64(r.baseBytes)), mib(uint64(r.baseDisk)))
	w("and the Flask snapshot made from it is %s, of which %s are left to the base image's file (runs of pages equal to the base's) and %s are on disk; building it (a restore of the base image, the app's import, the save) took %s.\n",
		mib(uint64(r.fromBaseBytes)), mib(r.sharedBytes), mib(uint64(r.fromBaseDisk)), r.fromBaseTime.Round(time.Millisecond))
	w("Start is until the instance can serve; first response is the first request after that, served in-process.\n")
	w("Memory is the kernel's accounting of the instance's linear memory (`/proc/self/smaps`): private is what only it holds (what one more instance costs), median of %d instances.\n\n", p.MemSamples)
	w("| how | starts | start p50 | start p99 | first response p50 | p99 | private before serving | after 1 request | after 100 | PSS after 100 |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, f := range append([]startFigures{r.fresh}, r.modes...) {
		w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", f.name, len(f.start),
			ms(pct(f.start, 50)), ms(pct(f.start, 99)), ms(pct(f.first, 50)), ms(pct(f.first, 99)),
			mib(medianUsage(f.before, priv)), mib(medianUsage(f.after1, priv)), mib(medianUsage(f.after, priv)), mib(medianUsage(f.after, pss)))
	}
	w("\n")

	w("## Idle tenants: first response through the server\n\n")
	w("Each tenant is a copy of the Flask example with `min_warm = 0`, so no instance exists until its first request; ")
	w("the request goes over loopback HTTP through `server` (routing, policy, pool, restore or fresh start). ")
	w("With snapshots the server had opened (verified) every snapshot after load, as `serve` does in the background, and the harness then wrote the disk's dirty pages back and waited %v before the first request.\n\n", settleTime)
	w("The first round is each tenant's first request since its snapshot was built: its restore has no write set yet, and the pool records one after the request. ")
	w("The next %d rounds are the same tenants idle again, having served: each a new server on the same snapshot folder (as after a restart), with no instance left, whose restores copy the recorded write set in. ", len(r.shipped.again))
	w("The shipped snapshots (images of their own) and those made from a shared base image (`--snapshot-base`, with copies of the tenants and a snapshot folder of their own) take turns: both first rounds, then a round of each, which of them goes first alternating. ")
	w("The warm-up row is a third copy of the tenants, whose tenant.toml sets `warmup = \"/\"`: once a snapshot is built, the server requests that path of an instance restored from it and records the write set, so that the first real request restores with one. ")
	w("The last column is what the machine read from disk while the requests ran (`pgpgin` in `/proc/vmstat`): where it pages out file pages no process maps once they are cold (see the memory line at the top), a tenant idle that long has its snapshot's pages read from disk again, and its restore (the write set's copy first) waits for them. ")
	w("Rounds that are slow with little read from disk are slow in the restore's copying of pages (the write set's copy, timed apart while these figures were investigated), after a phase that allocated and freed much memory: the balloon has handed those pages to the host, which must back them again when they are written.\n\n")
	w("| snapshots | tenants | p50 | p90 | p99 | max | read from disk |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	type row struct {
		name string
		run  tenantsRun
	}
	var rows []row
	for _, c := range []struct {
		name string
		figs serverFigures
	}{{"on", r.shipped}, {"on, shared base (--snapshot-base)", r.shared}} {
		rows = append(rows, row{c.name + ", first request since the build", c.figs.first})
		for i, run := range c.figs.again {
			rows = append(rows, row{fmt.Sprintf("%s, served before, round %d", c.name, i+1), run})
		}
		rows = append(rows, row{c.name + ", served before, all rounds", concatRuns(c.figs.again)})
	}
	rows = append(rows, row{"on, warm-up path (`warmup = \"/\"`), first request since the build", r.warmedFirst}, row{"off", r.off})
	for _, row := range rows {
		t := row.run.times
		w("| %s | %d | %s | %s | %s | %s | %s |\n", row.name, len(t), ms(pct(t, 50)), ms(pct(t, 90)), ms(pct(t, 99)), ms(pct(t, 100)), mib(row.run.readBack))
	}
	w("\n")

	w("## Density: warm Flask tenants per 8 GiB\n\n")
	w("The server process's memory (`/proc/self/smaps_rollup`, after a Go collection) as tenants get their first request, each leaving one warm instance that has served it. ")
	w("PSS is the measure: a page that many mappings share counts once, where RSS counts it once per mapping (with a shared base, every tenant's instance maps the pages of the base image). ")
	w("File-backed memory is the snapshots' pages in the page cache; anonymous is everything written (pages copied on write, Go heap, compiled code).\n\n")
	w("| snapshots | warm tenants | PSS | anonymous | file-backed | RSS |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, row := range []struct {
		name string
		pts  []densityPoint
	}{{"on", r.shipped.first.density}, {"on, shared base", r.shared.first.density}, {"off", r.off.density}} {
		for _, pt := range row.pts {
			w("| %s | %d | %s | %s | %s | %s |\n", row.name, pt.tenants, mib(pt.pss), mib(pt.anon), mib(pt.filePSS), mib(pt.rss))
		}
	}
	slopeOn, baseOn := fit(r.shipped.first.density)
	slopeBase, baseBase := fit(r.shared.first.density)
	slopeOff, baseOff := fit(r.off.density)
	fitsOn, fitsBase, fitsOff := tenantsIn(eightGiB, slopeOn, baseOn), tenantsIn(eightGiB, slopeBase, baseBase), tenantsIn(eightGiB, slopeOff, baseOff)
	w("\nLeast-squares line of PSS through the points: %s per added tenant with snapshots (%s at zero), %s with a shared base (%s at zero), %s without snapshots (%s at zero). ",
		mib(uint64(slopeOn)), mib(uint64(max(baseOn, 0))), mib(uint64(slopeBase)), mib(uint64(max(baseBase, 0))), mib(uint64(slopeOff)), mib(uint64(max(baseOff, 0))))
	w("Extrapolated to 8 GiB: **%d** tenants with snapshots, %d with a shared base, %d without (the extrapolation goes %.0fx beyond the largest measured count).\n\n",
		fitsOn, fitsBase, fitsOff, float64(fitsOn)/float64(max(1, lastTenants(r.shipped.first.density))))

	w("## Reading\n\n")
	shippedAgain := concatRuns(r.shipped.again).times
	again, first := pct(shippedAgain, 50), pct(r.shipped.first.times, 50)
	w("- Idle Flask tenant to first response, p50: %s when it has served before (rounds from %s to %s) and %s for its first request since its snapshot was built, against %s without snapshots. The target (<= %s) is %s for a tenant that has served and %s for a first request; the stretch (1 ms) is %s.\n",
		ms(again), ms(roundP50(r.shipped.again, slices.Min)), ms(roundP50(r.shipped.again, slices.Max)), ms(first), ms(pct(r.off.times, 50)),
		ms(targetFirstResponse), metOrNot(again <= targetFirstResponse), metOrNot(first <= targetFirstResponse), metOrNot(max(again, first) <= time.Millisecond))
	w("  Over the target: %.0f%% of those first responses (served before) and %.0f%% of first requests took longer than %s.\n",
		100*over(shippedAgain, targetFirstResponse), 100*over(r.shipped.first.times, targetFirstResponse), ms(targetFirstResponse))
	warmed := pct(r.warmedFirst.times, 50)
	w("  A tenant that sets a warm-up path (tenant.toml's `warmup`), whose write set the server records when it builds the snapshot, answers its first request since the build in %s p50 (%.0f%% over the target): the target is %s for it.\n",
		ms(warmed), 100*over(r.warmedFirst.times, targetFirstResponse), metOrNot(warmed <= targetFirstResponse))
	if i := slices.IndexFunc(r.modes, func(f startFigures) bool { return f.shipped }); i >= 0 {
		f := r.modes[i]
		share := float64(medianUsage(f.after1, priv)) / float64(max(1, medianUsage(r.fresh.after1, priv)))
		share100 := float64(medianUsage(f.after, priv)) / float64(max(1, medianUsage(r.fresh.after, priv)))
		w("- One more instance (%s) after serving one request holds %.0f%% of a fresh instance's private memory (%.0f%% after 100 requests): the target (<= %.0f%%) is %s.\n",
			f.name, 100*share, 100*share100, 100*targetExtraShare, metOrNot(share <= targetExtraShare))
		w("- Write set: the first request after a restore wrote %d pages (%s); restores with the write set copy them in before the guest runs (one `madvise(MADV_POPULATE_WRITE)` per run of pages) instead of taking a copy-on-write fault for each during the request.\n",
			r.writeSetPages, mib(uint64(r.writeSetPages*os.Getpagesize())))
		w("- Mapping modes: %s.\n", r.modeReading())
	}
	w("- Warm Flask tenants in 8 GiB (extrapolated from the measured line): %d against a target of %d: %s.\n", fitsOn, targetTenants8GiB, metOrNot(fitsOn >= targetTenants8GiB))
	sharedAgain := pct(concatRuns(r.shared.again).times, 50)
	w("- Shared base image (`--snapshot-base`, off by default): a Flask tenant's snapshot takes %s on disk against %s as an image of its own (%.0f%%) and builds in %s against %s; a warm tenant adds %s of PSS against %s (%.0f%%); ",
		mib(uint64(r.fromBaseDisk)), mib(uint64(r.snapDisk)), 100*float64(r.fromBaseDisk)/float64(max(1, r.snapDisk)),
		r.fromBaseTime.Round(time.Millisecond), r.buildTime.Round(time.Millisecond),
		mib(uint64(slopeBase)), mib(uint64(slopeOn)), 100*slopeBase/max(1, slopeOn))
	w("an idle tenant that has served answers its first request in %s p50 against %s (%+.0f%%), and a single restore plus first response takes %s against %s. ",
		ms(sharedAgain), ms(again), 100*(float64(sharedAgain)/float64(max(1, again))-1), r.restoreAndFirst(true), r.restoreAndFirst(false))
	w("Of the snapshot's %s, %s (%.0f%%) are mapped from the base: importing the app writes reference counts into the shared modules' objects and fills free slots in the base's heap, so most pages of the base that the app's import touches differ, and only long runs of untouched pages are mapped from the base (each run is one more mapping per restore). ",
		mib(uint64(r.fromBaseBytes)), mib(r.sharedBytes), 100*float64(r.sharedBytes)/float64(max(1, r.fromBaseBytes)))
	w("Beyond these figures, the tenants on one base image share its string-hash secret (README, \"Snapshots\"); the shipped default is images of their own.\n")
	w("- What dirties pages after restore: CPython 3.11 writes reference counts into every object it touches, so a request copies the pages of the objects it uses (code objects, module dicts, Flask's and Werkzeug's functions). `gc.freeze()` at snapshot time keeps later collections from touching the rest.\n")
	return b.String()
}

// restoreAndFirst is the p50 restore plus the p50 first response of the
// write-set row with (base) or without a shared base image.
func (r *report) restoreAndFirst(base bool) string {
	for _, f := range r.modes {
		if (base && f.base) || (!base && f.shipped) {
			return ms(pct(f.start, 50) + pct(f.first, 50))
		}
	}
	return "not measured"
}

func (r *report) modeReading() string {
	var parts []string
	for _, f := range r.modes {
		parts = append(parts, fmt.Sprintf("%s starts in %s p50 and answers its first request in %s, holding %s after it",
			f.name, ms(pct(f.start, 50)), ms(pct(f.first, 50)), mib(medianUsage(f.after1, priv))))
	}
	return strings.Join(parts, "; ") + "; the shipped choice is the private mapping with the write set"
}

// over is the share of ds above limit.
func over(ds []time.Duration, limit time.Duration) float64 {
	n := 0
	for _, d := range ds {
		if d > limit {
			n++
		}
	}
	return float64(n) / float64(max(1, len(ds)))
}

// roundP50 picks (with pick, e.g. slices.Min) among the rounds' medians.
func roundP50(rounds []tenantsRun, pick func([]time.Duration) time.Duration) time.Duration {
	if len(rounds) == 0 {
		return 0
	}
	p50s := make([]time.Duration, len(rounds))
	for i, run := range rounds {
		p50s[i] = pct(run.times, 50)
	}
	return pick(p50s)
}

// concatRuns is runs as one: every time, and all that was read back.
func concatRuns(runs []tenantsRun) tenantsRun {
	var all tenantsRun
	for _, run := range runs {
		all.times = append(all.times, run.times...)
		all.readBack += run.readBack
	}
	return all
}

func priv(u sandbox.MemoryUsage) uint64 { return u.Private }
func pss(u sandbox.MemoryUsage) uint64  { return u.PSS }

func medianUsage(us []sandbox.MemoryUsage, f func(sandbox.MemoryUsage) uint64) uint64 {
	if len(us) == 0 {
		return 0
	}
	v := make([]uint64, len(us))
	for i, u := range us {
		v[i] = f(u)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// pct is the q-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// fit is the least-squares line of PSS against tenants: bytes per tenant
// and the intercept.
func fit(pts []densityPoint) (slope, base float64) {
	if len(pts) < 2 {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	for _, p := range pts {
		x, y := float64(p.tenants), float64(p.pss)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(pts))
	den := n*sxx - sx*sx
	if den == 0 {
		return 0, 0
	}
	slope = (n*sxy - sx*sy) / den
	return slope, (sy - slope*sx) / n
}

func tenantsIn(budget, slope, base float64) int {
	if slope <= 0 {
		return 0
	}
	return int((budget - max(base, 0)) / slope)
}

func lastTenants(pts []densityPoint) int {
	if len(pts) == 0 {
		return 0
	}
	return pts[len(pts)-1].tenants
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func diskBytes(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	out, err := exec.Command("uname", "-r").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// guestMemoryFacts names what on this machine hands freed memory back to a
// hypervisor: a virtio balloon with free page reporting, DAMON reclaim.
func guestMemoryFacts() []string {
	var facts []string
	devices, _ := filepath.Glob("/sys/bus/virtio/devices/*")
	for _, d := range devices {
		id, _ := os.ReadFile(filepath.Join(d, "device"))
		features, _ := os.ReadFile(filepath.Join(d, "features"))
		// Device 5 is the balloon; feature bit 5 is VIRTIO_BALLOON_F_REPORTING.
		if strings.TrimSpace(string(id)) == "0x0005" && len(features) > 5 && features[5] == '1' {
			facts = append(facts, "the virtio balloon reports free pages to the host, which reclaims them")
		}
	}
	kdamonds, _ := filepath.Glob("/sys/kernel/mm/damon/admin/kdamonds/*/state")
	for _, k := range kdamonds {
		if state, _ := os.ReadFile(k); strings.TrimSpace(string(state)) == "on" {
			actions, _ := filepath.Glob(filepath.Join(filepath.Dir(k), "contexts/*/schemes/*/action"))
			for _, a := range actions {
				if b, _ := os.ReadFile(a); strings.TrimSpace(string(b)) == "pageout" {
					facts = append(facts, "DAMON pages out memory it finds cold"+damonScheme(filepath.Dir(a)))
				}
			}
		}
	}
	return slices.Compact(facts)
}

// damonScheme says what a DAMON pageout scheme (its sysfs folder) takes:
// which pages (its filters) and after how long unaccessed.
func damonScheme(dir string) string {
	read := func(rel string) string {
		b, _ := os.ReadFile(filepath.Join(dir, rel))
		return strings.TrimSpace(string(b))
	}
	var what []string
	filters, _ := filepath.Glob(filepath.Join(dir, "ops_filters/*"))
	for _, f := range filters {
		rel := filepath.Join("ops_filters", filepath.Base(f))
		switch t, allow := read(filepath.Join(rel, "type")), read(filepath.Join(rel, "allow")); {
		case t == "anon" && allow == "N":
			what = append(what, "not anonymous memory")
		case t == "unmapped" && allow == "Y":
			what = append(what, "only file pages that no process maps")
		}
	}
	age, _ := strconv.ParseUint(read("access_pattern/age/min"), 10, 64)
	aggr, _ := strconv.ParseUint(read("../../monitoring_attrs/intervals/aggr_us"), 10, 64)
	if age > 0 && aggr > 0 {
		what = append(what, fmt.Sprintf("once unaccessed for %d s", age*aggr/1e6))
	}
	if len(what) == 0 {
		return ""
	}
	return " (" + strings.Join(what, ", ") + ")"
}
