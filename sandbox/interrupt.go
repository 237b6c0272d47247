package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// preemptTick is how often the epoch thread asks every guest to check in. A
// check-in is a host call, which is a point where Go's scheduler and garbage
// collector can stop the goroutine; without it, a guest in a long loop would
// hold up every stop-the-world pause of the process.
const preemptTick = 2 * time.Millisecond

// interrupter stops one instance at its next loop head (ABI.md
// "Interruption"). The guest reads the word at every loop head and calls
// the host's interrupt function when it is not zero; CheckIn then clears
// it and reports whether the guest must stop.
type interrupter struct {
	mu         sync.Mutex // guards word against detach
	word       *uint32    // inside the instance's stable linear memory; nil once detached
	unregister func()     // from the epoch thread
	stopped    chan struct{}
	stopOnce   sync.Once
	cause      atomic.Pointer[error]
	yield      func() // Options.Yield
	// request is the request being served, set and read only on the
	// guest's goroutine: a sleep first sends what its response holds back.
	request *hostabi.Exchange
}

func newInterrupter(mem *linearMemory, addr uint32, yield func()) (*interrupter, error) {
	if mem == nil || uint64(addr)+4 > mem.size || addr%4 != 0 {
		return nil, errors.New("sandbox: interrupt word outside linear memory")
	}
	word := (*uint32)(unsafe.Pointer(&mem.reserved[addr]))
	unregister, err := epochRegister(word)
	if err != nil {
		return nil, err
	}
	it := &interrupter{word: word, unregister: unregister, stopped: make(chan struct{}), yield: yield}
	mem.beforeFree = it.detach
	return it, nil
}

// lateInterrupter is the interrupter of a module that is being
// instantiated: it needs the module's interrupt word, known only once the
// module exists, while the module's nanosleep is configured before.
type lateInterrupter struct{ p atomic.Pointer[interrupter] }

// sleep is the module's nanosleep: the interrupter's once attached, a
// plain sleep before.
func (l *lateInterrupter) sleep(ns int64) {
	if it := l.p.Load(); it != nil {
		it.sleep(ns)
	} else {
		time.Sleep(time.Duration(ns))
	}
}

// attach makes the interrupter of the word mod exports (ABI.md
// "Interruption") in mem; what names the module in the error when it
// exports none.
func (l *lateInterrupter) attach(mod api.Module, mem *linearMemory, yield func(), what string) (*interrupter, error) {
	flag := mod.ExportedGlobal(hostabi.ExportInterruptFlag)
	if flag == nil {
		return nil, fmt.Errorf("sandbox: %s lacks the %s global (ABI.md \"Interruption\")", what, hostabi.ExportInterruptFlag)
	}
	it, err := newInterrupter(mem, uint32(flag.Get()), yield)
	if err != nil {
		return nil, err
	}
	l.p.Store(it)
	return it, nil
}

// raise asks the guest to check in at its next loop head.
func (it *interrupter) raise() {
	it.mu.Lock()
	if it.word != nil {
		atomic.StoreUint32(it.word, 1)
	}
	it.mu.Unlock()
}

// detach forgets the word; call it before the instance's memory is freed,
// since a deadline timer or the preempter may still call raise.
func (it *interrupter) detach() {
	it.mu.Lock()
	if it.word != nil {
		it.unregister()
		it.word = nil
	}
	it.mu.Unlock()
}

// stop makes the next check-in fail with cause, and wakes a sleeping guest.
func (it *interrupter) stop(cause error) {
	it.stopOnce.Do(func() {
		it.cause.Store(&cause)
		close(it.stopped)
	})
	it.raise()
}

// CheckIn implements hostabi.Interrupter.
// It runs on the guest's goroutine, while the memory is certainly alive.
func (it *interrupter) CheckIn() error {
	if w := it.word; w != nil {
		atomic.StoreUint32(w, 0)
	}
	if c := it.cause.Load(); c != nil {
		return *c
	}
	// A guest never reaches a safe point of Go's scheduler on its own, so
	// its goroutine would keep the P until sysmon preempts it (10 ms): the
	// goroutines reading the next requests would wait that long. Every
	// check-in (each epoch tick, 2 ms) lets them run (internal/netyield
	// says why Gosched alone is not enough for the network).
	it.yield()
	return nil
}

// sleep is the guest's nanosleep: a real sleep that ends early when the
// instance is stopped.
func (it *interrupter) sleep(ns int64) {
	if it.request != nil {
		it.request.Settle()
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-it.stopped:
	}
}

// watch stops the instance when ctx ends, until the returned func is called.
func (it *interrupter) watch(ctx context.Context) (release func() bool) {
	return context.AfterFunc(ctx, func() {
		cause := context.Cause(ctx)
		if errors.Is(cause, context.DeadlineExceeded) {
			cause = ErrDeadline
		}
		it.stop(cause)
	})
}

// ErrDeadline is the cause of a guest call stopped by its deadline.
var ErrDeadline = errors.New("sandbox: deadline exceeded")
