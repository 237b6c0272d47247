// Package guestprof is a sampling profiler of a wazero guest's time by wasm
// function, built on wazero's experimental function listeners
// (experimental.WithFunctionListenerFactory), for finding where the
// interpreter spends a request's time.
//
// Method. A Profiler listens on every function of the modules compiled with
// its Context (guest and host functions alike) and keeps a shadow call stack:
// Before pushes the function, After and Abort pop it. A ticker counts a
// "sample now" mark every period; the first call or return after marks
// records, once per mark, the stack of the function that was executing:
//
//   - at Before(f), called by g, g was running: the stack without f;
//   - at After(f), f was running (its own code, since it made no call after
//     the marks): the stack with f.
//
// So a leaf function's own time is its own, not its caller's or the next
// callee's. A mark set while no guest function is on the stack (the host
// between calls into the guest) is dropped at the next entry, so samples
// count time with a guest call in progress, time in host functions included
// (they are listened on too and show under their module's name).
//
// Cost. Every call and return of the guest leaves the compiled code for Go
// (50-70 ns each in benchmarks/PROFILE.md), whether or not a sample is due,
// so the guest runs 2-10x slower while profiled, and that time lands on the
// functions that make many short calls: shares are of the slowed guest.
// FlatCorrected takes an estimate of it out. Names come from the module's
// name section (wazero reads it); a stripped module shows "$INDEX" names,
// see NamedInterpreter.
//
// A Profiler follows one guest call at a time (one shadow stack): profile
// one instance, from one goroutine.
package guestprof

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/pprof/profile"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// DefaultPeriod is the sampling period New uses for 0.
const DefaultPeriod = time.Millisecond

// Profiler samples the wasm call stacks of the modules compiled with its
// Context. Create it with New; Start and Stop bracket what is sampled.
type Profiler struct {
	period time.Duration
	mark   atomic.Int64 // ticks not yet recorded

	mu      sync.Mutex
	names   []string // function id -> name
	stack   []uint32 // shadow stack of function ids, outermost first
	samples map[string]int64
	charged []int64 // function id -> events charged to it while started
	events  int64   // calls and returns seen while started
	dropped int64   // marks consumed outside any guest call
	on      bool

	stop chan struct{}
	done chan struct{}
	wall time.Duration
	t0   time.Time
}

// New returns a Profiler that samples every period (DefaultPeriod if 0).
func New(period time.Duration) *Profiler {
	if period <= 0 {
		period = DefaultPeriod
	}
	return &Profiler{period: period, samples: map[string]int64{}}
}

// Context returns ctx with p as wazero's function listener factory: modules
// compiled (and host modules instantiated) with it report to p. A compiled
// module keeps its listeners, so compile the profiled module in a runtime
// (and a compilation cache folder) of its own.
func (p *Profiler) Context(ctx context.Context) context.Context {
	return experimental.WithFunctionListenerFactory(ctx, p)
}

// NewFunctionListener implements experimental.FunctionListenerFactory.
func (p *Profiler) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	name := def.Name()
	if name == "" {
		name = fmt.Sprintf("$%d", def.Index())
	}
	if def.GoFunction() != nil { // a host function: say whose
		name = def.ModuleName() + "." + name
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = append(p.names, name)
	p.charged = append(p.charged, 0)
	return &listener{p: p, id: uint32(len(p.names) - 1)}
}

type listener struct {
	p  *Profiler
	id uint32
}

func (l *listener) Before(_ context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	p := l.p
	p.mu.Lock()
	if p.on {
		if p.mark.Load() != 0 {
			p.take()
		}
		if n := len(p.stack); n > 0 {
			p.charged[p.stack[n-1]]++ // the caller pays for the call
		}
		p.events++
	}
	p.stack = append(p.stack, l.id)
	p.mu.Unlock()
}

func (l *listener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {
	p := l.p
	p.mu.Lock()
	if p.on {
		if p.mark.Load() != 0 {
			p.take()
		}
		p.charged[l.id]++ // the returning function pays for the return
		p.events++
	}
	p.pop(l.id)
	p.mu.Unlock()
}

func (l *listener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {
	l.p.mu.Lock()
	l.p.pop(l.id)
	l.p.mu.Unlock()
}

// pop removes id from the top of the shadow stack (and anything above it,
// should a frame have left without After or Abort).
func (p *Profiler) pop(id uint32) {
	for i := len(p.stack) - 1; i >= 0; i-- {
		if p.stack[i] == id {
			p.stack = p.stack[:i]
			return
		}
	}
}

// take records the shadow stack as the sample of every tick since the last
// one (a function that ran for several periods without a call or return
// gets them all) and clears the mark; p.mu is held.
func (p *Profiler) take() {
	n := p.mark.Swap(0)
	if len(p.stack) == 0 {
		p.dropped += n
		return
	}
	key := make([]byte, 4*len(p.stack))
	for i, id := range p.stack {
		binary.LittleEndian.PutUint32(key[4*i:], id)
	}
	p.samples[string(key)] += n
}

// Start begins sampling; Stop ends it. Samples accumulate across
// Start/Stop pairs.
func (p *Profiler) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on {
		return
	}
	p.on = true
	p.t0 = time.Now()
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := time.NewTicker(p.period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.mark.Add(1)
			}
		}
	}(p.stop, p.done)
}

// Stop ends sampling started by Start.
func (p *Profiler) Stop() {
	p.mu.Lock()
	if !p.on {
		p.mu.Unlock()
		return
	}
	p.on = false
	p.wall += time.Since(p.t0)
	stop, done := p.stop, p.done
	p.mu.Unlock()
	close(stop)
	<-done
	p.mark.Store(0)
}

// Reset forgets the samples and counts so far (not the function names).
func (p *Profiler) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples, p.events, p.dropped, p.wall = map[string]int64{}, 0, 0, 0
	clear(p.charged)
}

// Stats are counts of what a Profiler saw.
type Stats struct {
	Samples int64         // samples recorded
	Dropped int64         // marks that fell outside any guest call
	Events  int64         // listener calls (function entries and returns)
	Wall    time.Duration // time between Start and Stop
}

// Stats returns the counts so far.
func (p *Profiler) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, c := range p.samples {
		n += c
	}
	return Stats{Samples: n, Dropped: p.dropped, Events: p.events, Wall: p.wall}
}

// Profile returns the samples as a pprof profile: sample types "samples"
// (count) and "cpu" (nanoseconds, samples times the period), one function
// and location per wasm function, the innermost frame first.
func (p *Profiler) Profile() *profile.Profile {
	p.mu.Lock()
	defer p.mu.Unlock()
	prof := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "samples", Unit: "count"},
			{Type: "cpu", Unit: "nanoseconds"},
		},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        p.period.Nanoseconds(),
		DurationNanos: p.wall.Nanoseconds(),
		TimeNanos:     p.t0.UnixNano(),
	}
	locs := map[uint32]*profile.Location{}
	loc := func(id uint32) *profile.Location {
		if l, ok := locs[id]; ok {
			return l
		}
		fn := &profile.Function{ID: uint64(len(prof.Function) + 1), Name: p.names[id], SystemName: p.names[id]}
		prof.Function = append(prof.Function, fn)
		l := &profile.Location{ID: uint64(len(prof.Location) + 1), Line: []profile.Line{{Function: fn}}}
		prof.Location = append(prof.Location, l)
		locs[id] = l
		return l
	}
	keys := make([]string, 0, len(p.samples))
	for k := range p.samples {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := &profile.Sample{Value: []int64{p.samples[k], p.samples[k] * p.period.Nanoseconds()}}
		for i := len(k) - 4; i >= 0; i -= 4 {
			s.Location = append(s.Location, loc(binary.LittleEndian.Uint32([]byte(k[i:i+4]))))
		}
		prof.Sample = append(prof.Sample, s)
	}
	return prof
}

// WriteTo writes the profile, gzipped protobuf as `go tool pprof` reads it.
func (p *Profiler) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	if err := p.Profile().Write(cw); err != nil {
		return cw.n, fmt.Errorf("guestprof: write profile: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// FlatCorrected estimates each function's own share of the guest's time
// without the listener: its sampled time less perEvent for every listener
// event charged to it while sampling (the calls it made and its own
// returns, which is where a sample taken in the listener's path lands),
// clamped at zero, over the sum of what remains. perEvent is the listener's
// cost per event, measured as (time with listener - time without) / events.
// Functions whose names skip returns true are left out. It returns the n
// largest (all if n <= 0).
func (p *Profiler) FlatCorrected(perEvent time.Duration, n int, skip func(string) bool) []Row {
	p.mu.Lock()
	defer p.mu.Unlock()
	flat := make([]float64, len(p.names))
	for k, c := range p.samples {
		flat[binary.LittleEndian.Uint32([]byte(k[len(k)-4:]))] += float64(c) * float64(p.period)
	}
	var total float64
	for id := range flat {
		flat[id] = max(0, flat[id]-float64(perEvent)*float64(p.charged[id]))
		if skip != nil && skip(p.names[id]) {
			flat[id] = 0
		}
		total += flat[id]
	}
	var rows []Row
	for id, v := range flat {
		if v > 0 {
			rows = append(rows, Row{Name: p.names[id], Flat: v / total})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Flat != rows[j].Flat {
			return rows[i].Flat > rows[j].Flat
		}
		return rows[i].Name < rows[j].Name
	})
	if n > 0 && len(rows) > n {
		rows = rows[:n]
	}
	return rows
}

// Row is one function's share of a profile's samples.
type Row struct {
	Name string
	Flat float64 // share of samples with the function innermost
	Cum  float64 // share of samples with the function anywhere on the stack
}

// Top returns the n functions of prof (all if n <= 0) with the largest flat
// share, and the n with the largest cumulative share, by prof's first
// sample value. Samples whose innermost function's name skip returns true
// for are left out (skip may be nil).
func Top(prof *profile.Profile, n int, skip func(string) bool) (flat, cum []Row) {
	var total int64
	rows := map[string]*Row{}
	flatN, cumN := map[string]int64{}, map[string]int64{}
	for _, s := range prof.Sample {
		if skip != nil && len(s.Location) > 0 && len(s.Location[0].Line) > 0 && skip(s.Location[0].Line[0].Function.Name) {
			continue
		}
		v := s.Value[0]
		total += v
		seen := map[string]bool{}
		for i, l := range s.Location {
			for _, ln := range l.Line {
				name := ln.Function.Name
				if rows[name] == nil {
					rows[name] = &Row{Name: name}
				}
				if i == 0 {
					flatN[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cumN[name] += v
				}
			}
		}
	}
	all := make([]Row, 0, len(rows))
	for name, r := range rows {
		if total > 0 {
			r.Flat, r.Cum = float64(flatN[name])/float64(total), float64(cumN[name])/float64(total)
		}
		all = append(all, *r)
	}
	pick := func(key func(Row) float64) []Row {
		out := append([]Row(nil), all...)
		sort.Slice(out, func(i, j int) bool {
			if key(out[i]) != key(out[j]) {
				return key(out[i]) > key(out[j])
			}
			return out[i].Name < out[j].Name
		})
		if n > 0 && len(out) > n {
			out = out[:n]
		}
		return out
	}
	return pick(func(r Row) float64 { return r.Flat }), pick(func(r Row) float64 { return r.Cum })
}
