package benchmarks

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestTenantsHeader runs tenants.py's header function (the Machine and
// Versions lines of TENANTS.md) with stand-in tools and checks that it ran
// the commands: a command string joined as a list printed "g r e p ...".
func TestTenantsHeader(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s (Debian's python3.11): %v", python, err)
	}
	script := `import tenants
m, v = tenants.header({"NGINX": "/bin/echo", "UWSGI": "/bin/echo", "PYTHON": "/usr/bin/python3.11", "NATIVE_PYTHONPATH": "/nonexistent"})
print(m)
print(v)`
	cmd := exec.Command(python, "-c", script)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("header: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("header printed %q, want two lines", out)
	}
	machine, versions := lines[0], lines[1]
	for _, bad := range []string{"g r e p", "u n a m e", "' '", "/ "} {
		if strings.Contains(machine, bad) || strings.Contains(versions, bad) {
			t.Errorf("header has %q (a command printed character by character?):\n%s\n%s", bad, machine, versions)
		}
	}
	if !strings.Contains(machine, "Linux ") || !strings.Contains(machine, " cores") || !strings.Contains(machine, ", go") {
		t.Errorf("machine line %q lacks the kernel, cores or Go version", machine)
	}
	// The stand-in nginx is echo, run as a list: it prints its one argument.
	if !strings.HasPrefix(versions, "-v, uWSGI ") {
		t.Errorf("versions line %q did not run the nginx command (stand-in /bin/echo -v)", versions)
	}
}
