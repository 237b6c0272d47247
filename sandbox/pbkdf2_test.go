package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestPBKDF2 runs hashlib.pbkdf2_hmac in the sandbox, backed by the host
// (hostabi/ABI.md "Key derivation"): RFC 6070 and RFC 7914 vectors, the same
// results and exceptions as CPython's pure-Python function, and the host's
// refusals above its caps, where the guest computes instead.
func TestPBKDF2(t *testing.T) {
	inst, logs := newInstance(t, "pbkdf2:app")
	t.Run("vectors", func(t *testing.T) {
		body := mustScenario(t, inst, logs, "/vectors")
		wantLines(t, body, "installed=True", "sha1 1 ok", "sha1 2 ok", "sha256 1 ok", "sha256 80000 ok")
		if n := strings.Count(body, " ok\n"); n != 7 {
			t.Errorf("%d of 7 vectors ok:\n%s", n, body)
		}
	})
	t.Run("same as pure Python", func(t *testing.T) {
		body := mustScenario(t, inst, logs, "/same")
		if strings.Contains(body, "differs") || strings.Count(body, " same\n") != 48 {
			t.Errorf("host and pure-Python pbkdf2_hmac disagree:\n%s", body)
		}
	})
	t.Run("fallback above the caps", func(t *testing.T) {
		body := mustScenario(t, inst, logs, "/fallback")
		wantLines(t, body, "iterations_over_cap=-1", "work_over_cap=-1", "dklen_over_cap=-1",
			"password_over_cap=-1", "unknown_hash=-28", "long_key_len=65537 same=True")
	})
}

// TestPBKDF2Deadline: a call at the cap (about 3 s of host CPU) ends with
// the request's deadline, as a blocking host call does: 504, instance
// dropped.
func TestPBKDF2Deadline(t *testing.T) {
	inst, logs := newInstance(t, "pbkdf2:app")
	const deadline = 300 * time.Millisecond
	start := time.Now()
	body, o, code := scenario(t, inst, logs, "/deadline", deadline)
	if !errors.Is(o.Err, sandbox.ErrDeadline) || code != 504 {
		t.Fatalf("outcome %+v status %d, want ErrDeadline and 504\n%s", o, code, body)
	}
	if late := time.Since(start) - deadline; late > time.Second {
		t.Errorf("ended %v after the deadline", late)
	}
}

// TestPBKDF2Figures logs Django 3.2's default PBKDF2 (sha256, 260,000
// iterations) in the sandbox, host-backed and pure-Python; both give the
// same key.
func TestPBKDF2Figures(t *testing.T) {
	inst, logs := newInstance(t, "pbkdf2:app")
	body := mustScenario(t, inst, logs, "/bench?repeat=3")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 {
		t.Fatalf("bench answered:\n%s", body)
	}
	_, hostKey, _ := strings.Cut(lines[0], "key=")
	_, pureKey, _ := strings.Cut(lines[1], "key=")
	if hostKey == "" || hostKey != pureKey {
		t.Errorf("keys differ:\n%s", body)
	}
	t.Log(strings.TrimSpace(body))
}

// TestPBKDF2CommandModule: the command module has _wsgi_host builtin. Plain
// (wsgi-wasm python) its hashlib is CPython's unchanged; the exec prelude
// installs the host's pbkdf2_hmac as the reactor's bootstrap does, so a
// management command (createsuperuser) hashes as fast as the app.
func TestPBKDF2CommandModule(t *testing.T) {
	const code = `import hashlib, sys
print(hashlib.pbkdf2_hmac('sha1', b'password', b'salt', 2).hex(), getattr(hashlib.pbkdf2_hmac, '_wsgi_host', False),
      getattr(hashlib, '_pure_pbkdf2_hmac', None) is hashlib.pbkdf2_hmac, '_wsgi_host' in sys.builtin_module_names)`
	const vector = "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957" // RFC 6070
	out, errOut, rc := runPython(t, "", "-c", code)
	if want := vector + " False False True\n"; rc != 0 || out != want {
		t.Errorf("python -c: exit %d, printed %q, want %q\n%s", rc, out, want, errOut)
	}
	var stdout, stderr bytes.Buffer
	rc, err := testEngine(t).RunAppCommand(context.Background(), sandbox.AppConfig{Dir: t.TempDir()},
		[]string{"-c", code}, sandbox.Command{Stdout: &stdout, Stderr: &stderr})
	if want := vector + " True False True\n"; err != nil || rc != 0 || stdout.String() != want {
		t.Errorf("exec prelude: exit %d, %v, printed %q, want %q\n%s", rc, err, stdout.String(), want, stderr.String())
	}
}
