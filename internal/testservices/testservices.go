// Package testservices starts real servers for the tests of outbound
// connections (issue 13): PostgreSQL 15, MariaDB 10.11 and Redis 7.0 from
// Debian 12's packages, which install.sh (make testservices, a prerequisite
// of make test) unpacks into the cache without installing them. Each server
// is started on first use, once per test binary, on a free loopback port
// with a password, as an unprivileged account when the test runs as root
// (nobody; PostgreSQL refuses root), with its data in a temporary folder;
// Stop (or Main, for TestMain) stops them all, and a server whose test
// process dies is killed by the kernel (parent-death signal). Postgres and
// MariaDB hand each call a fresh database, Redis a fresh key prefix. Where
// the servers are not installed, a test fails under CI (CI=true), since the
// test command installs them, and is skipped elsewhere with the command
// that does. A start, data folder included, takes about 1.2 s for
// PostgreSQL (initdb most of it), 2.2 s for MariaDB (mariadb-install-db)
// and 0.06 s for Redis on an idle 2-core machine.
package testservices

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Main runs the tests of a package and stops the servers they started:
//
//	func TestMain(m *testing.M) { testservices.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops every server started by this process and removes its files.
// Servers are started again on next use.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	for i := len(running) - 1; i >= 0; i-- {
		running[i].stop()
	}
	running = nil
	started = map[string]*result{}
	if staged != "" {
		os.RemoveAll(staged)
		staged = ""
	}
}

var (
	mu      sync.Mutex
	running []*proc
	started = map[string]*result{}
	staged  string // a copy of the tree that the unprivileged account can reach
	swept   bool
)

// result is a shared server's outcome, kept for the next caller.
type result struct {
	val any
	err error
}

// shared starts a server once per process (or after Stop) and hands every
// caller its outcome; the start runs under mu.
func shared[T any](tb testing.TB, key string, start func(tr *tree) (T, error)) T {
	tb.Helper()
	tr := require(tb)
	mu.Lock()
	r, ok := started[key]
	if !ok {
		v, err := start(tr)
		r = &result{val: v, err: err}
		started[key] = r
	}
	mu.Unlock()
	if r.err != nil {
		tb.Fatalf("testservices: %s: %v", key, r.err)
	}
	return r.val.(T)
}

// unavailable ends a test that needs something the test command installs:
// a failure under CI, a skip elsewhere.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("testservices: %s (under CI the test command installs it)", msg)
	}
	tb.Skipf("testservices: %s", msg)
}

// tree is the unpacked Debian packages and the account that runs them.
type tree struct {
	root     string              // the folder with usr/ below it
	cred     *syscall.Credential // nil: run as ourselves
	uid, gid int                 // the account's, for chown (-1 when not root)
}

func (tr *tree) path(rel string) string { return filepath.Join(tr.root, rel) }

func (tr *tree) env() []string {
	return []string{
		"LD_LIBRARY_PATH=" + tr.path("usr/lib/x86_64-linux-gnu"),
		"PATH=" + tr.path("usr/bin") + ":/usr/bin:/bin",
		"LANG=C", "LC_ALL=C", "TZ=UTC",
	}
}

// Dir is the folder install.sh unpacks the servers into.
func Dir() string {
	base := os.Getenv("WSGI_WASM_CACHE")
	if base == "" {
		c := os.Getenv("XDG_CACHE_HOME")
		if c == "" {
			home, _ := os.UserHomeDir()
			c = filepath.Join(home, ".cache")
		}
		base = filepath.Join(c, "wsgi-wasm")
	}
	return filepath.Join(base, "testservices", "root")
}

// require finds the tree and, when root, the unprivileged account and a copy
// of the tree it can reach.
func require(tb testing.TB) *tree {
	tb.Helper()
	root := Dir()
	if _, err := os.Stat(filepath.Join(root, ".stamp")); err != nil {
		unavailable(tb, "servers not installed in %s (run `make testservices`)", root)
	}
	tr := &tree{root: root, uid: -1, gid: -1}
	if os.Geteuid() != 0 {
		return tr
	}
	uid, gid := 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	tr.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	tr.uid, tr.gid = uid, gid
	if reachable(root) {
		return tr
	}
	mu.Lock()
	defer mu.Unlock()
	if staged == "" {
		dir, err := stage(root)
		if err != nil {
			tb.Fatalf("testservices: %v", err)
		}
		staged = dir
	}
	tr.root = staged
	return tr
}

// reachable tells whether every folder above path lets others through
// (root's home usually does not).
func reachable(path string) bool {
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// stage copies the tree into a temporary folder others can enter, with hard
// links where the file system allows (a few tens of milliseconds).
func stage(root string) (string, error) {
	sweep()
	dir, err := os.MkdirTemp("", tempPrefix()+"tree-")
	if err != nil {
		return "", fmt.Errorf("staging the servers: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("staging the servers: %w", err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		dst := filepath.Join(dir, rel)
		switch {
		case rel == ".":
			return nil
		case d.IsDir():
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		}
		if os.Link(p, dst) == nil {
			return nil
		}
		return copyFile(p, dst)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("staging the servers in %s: %w", dir, err)
	}
	return dir, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

// tempPrefix names this process's temporary folders, so that a later run
// can remove those of a process that died without Stop.
func tempPrefix() string { return "wsgi-wasm-testservices-" + strconv.Itoa(os.Getpid()) + "-" }

// sweep removes the temporary folders of test processes that are gone
// (killed before Stop; their servers died with them).
func sweep() {
	if swept {
		return
	}
	swept = true
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "wsgi-wasm-testservices-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

// tempDir makes a folder for one server's data, owned by the account that
// runs it.
func (tr *tree) tempDir(name string) (string, error) {
	sweep()
	dir, err := os.MkdirTemp("", tempPrefix()+name+"-")
	if err != nil {
		return "", err
	}
	if err := tr.chown(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func (tr *tree) chown(path string) error {
	if tr.uid < 0 {
		return nil
	}
	return os.Chown(path, tr.uid, tr.gid)
}

// writeFile writes a file the server's account owns, readable by it alone.
func (tr *tree) writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	return tr.chown(path)
}

// command prepares one of the tree's programs, run as the account.
func (tr *tree) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(tr.path(bin), args...)
	cmd.Env = tr.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tr.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs a program to its end and returns its output, which an error
// carries.
func (tr *tree) run(bin string, args ...string) ([]byte, error) {
	cmd := tr.command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, tail(out))
	}
	return out, nil
}

// proc is a running server.
type proc struct {
	name string
	cmd  *exec.Cmd
	dir  string         // removed at stop
	log  string         // its output
	quit syscall.Signal // the signal for a fast clean shutdown
	done chan struct{}
}

// start starts a server with its output in dir/log; it is stopped by Stop.
// The caller holds mu.
func (tr *tree) start(name, dir string, quit syscall.Signal, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, dir: dir, log: filepath.Join(dir, "log"), quit: quit, done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p.cmd = tr.command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	running = append(running, p)
	return p, nil
}

// exited tells whether the server has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failed describes a server that did not come up, with the end of its log.
func (p *proc) failed(err error) error {
	b, _ := os.ReadFile(p.log)
	return fmt.Errorf("%s did not start: %w; its log ends: %s", p.name, err, tail(b))
}

func (p *proc) stop() {
	if !p.exited() {
		syscall.Kill(-p.cmd.Process.Pid, p.quit)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Children of the server (PostgreSQL's backends) left in its group.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// abandon stops a server that did not come up and forgets it, keeping its
// folder for another try. The caller holds mu.
func (p *proc) abandon() {
	p.dir = ""
	p.stop()
	for i, q := range running {
		if q == p {
			running = append(running[:i], running[i+1:]...)
			break
		}
	}
}

// waitReady polls ready until it succeeds, the server exits or the
// deadline passes.
func (p *proc) waitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return p.failed(errors.New("it exited"))
		}
		if time.Now().After(deadline) {
			return p.failed(fmt.Errorf("not ready after %v: %w", timeout, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort picks a loopback TCP port nobody listens on (a server started
// right after takes it; a lost race shows as a failed start, retried).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startOnFreePort starts the server bin on a free loopback port and waits
// up to wait for ready, up to three times (another process may take the
// port between freePort and the server's bind): args gives its arguments
// for each port tried (and is where the caller notes the port), ready says
// when it serves. A server that never became ready is abandoned.
func (tr *tree) startOnFreePort(name, dir string, quit syscall.Signal, bin string, wait time.Duration,
	args func(port int) []string, ready func() error) error {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		var p *proc
		if p, err = tr.start(name, dir, quit, bin, args(port)...); err != nil {
			continue
		}
		if err = p.waitReady(wait, ready); err == nil {
			return nil
		}
		p.abandon()
	}
	return err
}

// secret makes a password.
func secret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tail is the last lines of a program's output, for an error.
func tail(b []byte) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}
