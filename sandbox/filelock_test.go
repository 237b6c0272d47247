package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// lockApp is the configuration of testdata/apps/sqlite_lock.py on data.
func lockApp(data string, logs *logLines) sandbox.AppConfig {
	return sandbox.AppConfig{App: "sqlite_lock:app", Dir: "testdata/apps", DataDir: data, Log: logs.log}
}

// dataInstances starts n instances of sqlite_lock.py sharing one data
// folder, as a pool of a data tenant has them.
func dataInstances(t *testing.T, n int) ([]*sandbox.Instance, *logLines, string) {
	t.Helper()
	logs, data := &logLines{}, t.TempDir()
	var insts []*sandbox.Instance
	for range n {
		inst, err := testEngine(t).NewInstance(context.Background(), lockApp(data, logs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close(context.Background()) })
		insts = append(insts, inst)
	}
	return insts, logs, data
}

// call serves path with inst under a deadline and returns the body, or
// the outcome's error.
func call(inst *sandbox.Instance, logs *logLines, path string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rec, o := do(inst, httptest.NewRequest("GET", path, nil).WithContext(ctx), logs)
	return rec.Body.String(), o.Err
}

// mustCall is call that fails the test on an error.
func mustCall(t *testing.T, inst *sandbox.Instance, logs *logLines, path string) string {
	t.Helper()
	body, err := call(inst, logs, path, 60*time.Second)
	if err != nil {
		t.Fatalf("%s: %v; log:\n%s", path, err, logs)
	}
	return body
}

// TestDataTenantRequestsRunConcurrently: a data tenant's slow request no
// longer holds up its other requests (the data folder used to be served
// one request at a time).
func TestDataTenantRequestsRunConcurrently(t *testing.T) {
	logs := &logLines{}
	p := pool.New(testEngine(t), lockApp(t.TempDir(), logs), pool.Config{MinWarm: 2, MaxInstances: 2})
	defer p.Close()
	waitFor(t, "two warm instances", func() bool { return p.Stats().Idle == 2 })
	slow := make(chan string, 1)
	go func() { slow <- get(p, logs, "/sleep?s=2").Body.String() }()
	waitFor(t, "the slow request in its instance", func() bool { return p.Stats().Idle == 1 })
	start := time.Now()
	if body := get(p, logs, "/fast").Body.String(); body != "fast" {
		t.Fatalf("fast: %q; log:\n%s", body, logs)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the fast request took %v beside a 2 s one", d)
	}
	if body := <-slow; body != "slept" {
		t.Fatalf("slow: %q; log:\n%s", body, logs)
	}
}

// TestSQLiteIncrementsFromTwoInstances: two instances increment one
// counter concurrently, each increment its own transaction: SQLite's locks
// exclude them from each other, its busy handler waits (in milliseconds),
// and no update is lost nor any "database is locked" reported.
func TestSQLiteIncrementsFromTwoInstances(t *testing.T) {
	insts, logs, _ := dataInstances(t, 2)
	const n = 100
	var wg sync.WaitGroup
	for _, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := call(inst, logs, "/incr?n=100", 60*time.Second); err != nil {
				t.Errorf("incr: %v", err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.Fatalf("log:\n%s", logs)
	}
	if got := mustCall(t, insts[0], logs, "/count"); got != "200" {
		t.Fatalf("count %s after 2 × %d increments; log:\n%s", got, n, logs)
	}
}

// holding starts two instances a and b of sqlite_lock.py on one database,
// has a hold an exclusive transaction for ms milliseconds, and returns once
// b sees the lock ("database is locked" without a busy timeout); a's body
// comes on held when it commits.
func holding(t *testing.T, ms int) (b *sandbox.Instance, logs *logLines, held chan string) {
	t.Helper()
	insts, logs, _ := dataInstances(t, 2)
	a, b := insts[0], insts[1]
	mustCall(t, b, logs, "/count") // creates the database
	held = make(chan string, 1)
	go func() { held <- mustCall(t, a, logs, "/hold?ms="+strconv.Itoa(ms)) }()
	waitFor(t, "b sees the lock", func() bool { return mustCall(t, b, logs, "/try") == "database is locked" })
	return b, logs, held
}

// TestSQLiteBusyWhileExclusive: while one instance holds an exclusive
// transaction, another gets "database is locked" without a busy timeout,
// and with one waits until the first commits, then proceeds.
func TestSQLiteBusyWhileExclusive(t *testing.T) {
	b, logs, held := holding(t, 1500)
	start := time.Now()
	if got := mustCall(t, b, logs, "/incr?n=1"); got != "1001" {
		t.Fatalf("b's increment after a's commit: %s, want 1001", got)
	}
	if body := <-held; body != "held" {
		t.Fatalf("a: %q", body)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("b's increment did not wait for a's transaction (%v)", d)
	}
	if got := mustCall(t, b, logs, "/try"); got != "ok" {
		t.Fatalf("b after a committed: %q", got)
	}
}

// TestSQLiteBusyWaitEndsAtDeadline: a request waiting in SQLite's busy
// handler (its sleeps are the sandbox's) ends at its deadline, not at its
// 20 s busy timeout.
func TestSQLiteBusyWaitEndsAtDeadline(t *testing.T) {
	b, logs, held := holding(t, 4000)
	start := time.Now()
	_, err := call(b, logs, "/incr?n=1", time.Second)
	if !errors.Is(err, sandbox.ErrDeadline) {
		t.Fatalf("b waiting for the lock: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("b's wait ended after %v, with a 1 s deadline", d)
	}
	if body := <-held; body != "held" {
		t.Fatalf("a: %q", body)
	}
}

// TestSQLiteLockReleasedWhenInstanceDies: an instance that dies holding an
// exclusive transaction (os._exit, or killed at its deadline) leaves no
// lock behind: the next writer proceeds at once, and SQLite rolls the dead
// instance's transaction back from its journal.
func TestSQLiteLockReleasedWhenInstanceDies(t *testing.T) {
	for _, c := range []struct{ name, path string }{{"exit", "/hold-exit"}, {"deadline", "/hold-forever"}} {
		t.Run(c.name, func(t *testing.T) {
			insts, logs, _ := dataInstances(t, 2)
			a, b := insts[0], insts[1]
			mustCall(t, b, logs, "/count")
			if _, err := call(a, logs, c.path, time.Second); err == nil {
				t.Fatalf("%s ended without an error", c.path)
			}
			if got := mustCall(t, b, logs, "/try"); got != "ok" {
				t.Fatalf("b after a died holding the lock: %q", got)
			}
			if got := mustCall(t, b, logs, "/count"); got != "0" {
				t.Fatalf("count %s: a's transaction was not rolled back", got)
			}
		})
	}
}

// TestFcntlFlockBetweenInstances: fcntl.flock excludes another instance
// until unlocked; a write lock on a read-only mount (/app) is EBADF.
func TestFcntlFlockBetweenInstances(t *testing.T) {
	insts, logs, _ := dataInstances(t, 2)
	a, b := insts[0], insts[1]
	for _, step := range []struct {
		inst       *sandbox.Instance
		path, want string
	}{
		{a, "/flock", "ok"},
		{b, "/flock", "BlockingIOError"},
		{a, "/flock", "ok"}, // its own lock
		{a, "/funlock", "ok"},
		{b, "/flock", "ok"},
		{a, "/flock", "BlockingIOError"},
		{a, "/flock-app", "errno 8"},
	} {
		if got := mustCall(t, step.inst, logs, step.path); got != step.want {
			t.Fatalf("%s: %q, want %q", step.path, got, step.want)
		}
	}
}

// TestExecWritesBesideInstances: a command of the app (wsgi-wasm exec's
// RunAppCommand, as a migrate would) holds an exclusive transaction that an
// instance sees, then writes while the instance does: SQLite's locks order
// them and no write is lost.
func TestExecWritesBesideInstances(t *testing.T) {
	insts, logs, data := dataInstances(t, 1)
	inst := insts[0]
	mustCall(t, inst, logs, "/count")
	var out, errb bytes.Buffer
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := testEngine(t).RunAppCommand(context.Background(), lockApp(data, logs), []string{"-c", `import time, sqlite_lock as m
db = m.connect(20)
db.execute("begin exclusive")
db.execute("update c set v = v + 1 where k = 1")
time.sleep(2)
db.execute("commit")
for _ in range(100):
    db.execute("begin immediate")
    db.execute("update c set v = v + 1 where k = 1")
    db.execute("commit")
print("done")`}, sandbox.Command{Stdout: &out, Stderr: &errb})
		done <- result{code, err}
	}()
	for deadline := time.Now().Add(30 * time.Second); mustCall(t, inst, logs, "/try") != "database is locked"; {
		select {
		case r := <-done:
			t.Fatalf("exec ended (%d, %v) before the instance saw its lock: out %q, err %s", r.code, r.err, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance never saw exec's lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Its first increment waits for exec's commit.
	if got, _ := strconv.Atoi(mustCall(t, inst, logs, "/incr?n=100")); got < 101 {
		t.Fatalf("the instance's increments ended at %d, before exec's commit", got)
	}
	r := <-done
	if r.err != nil || r.code != 0 || out.String() != "done\n" {
		t.Fatalf("exec: %d, %v, out %q, err %s", r.code, r.err, out.String(), errb.String())
	}
	if got := mustCall(t, inst, logs, "/count"); got != "201" {
		t.Fatalf("count %s after 101 increments from exec and 100 from an instance", got)
	}
}
