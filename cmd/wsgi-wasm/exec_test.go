package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

// execTenants makes a tenant tree with a and b, each with a writable data
// folder of 1 MiB; a's app holds an exclusive SQLite transaction for 3 s
// in /hold.
func execTenants(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(tree, name)
		os.MkdirAll(dir, 0o755)
		toml := "app = \"app:application\"\nhosts = [\"" + name + ".test\"]\n[env]\nWHO = \"" + name + "\"\n[policy]\nwritable_data = true\ndata_max_mb = 1\n"
		app := `import os, time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        import sqlite3
        db = sqlite3.connect(os.path.join(os.environ["WSGI_WASM_DATA_DIR"], "db.sqlite"), isolation_level=None)
        db.execute("create table if not exists t (n integer)")
        db.execute("begin exclusive")
        db.execute("insert into t values (1)")
        time.sleep(3)
        db.execute("commit")
        db.close()
    body = ",".join(sorted(os.listdir(os.environ["WSGI_WASM_DATA_DIR"]))).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`
		tool := "import sys\nprint('tool', sys.argv[1:])\n"
		for file, text := range map[string]string{"tenant.toml": toml, "app.py": app, "tool.py": tool, "secret_" + name + ".txt": name} {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tree
}

// runExec runs `wsgi-wasm exec ARGS...` and returns its exit code, stdout
// and stderr.
func runExec(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	in := testinterp.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), append([]string{"exec"}, args...)...)
	cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	code := exitCode(t, err)
	return code, out.String(), errOut.String()
}

// TestExec: a command runs in the tenant's sandbox as serve lays it out
// (its folder at /app as the working directory, its [env], its data
// folder within its quota, standard input and output), its exit code is
// the process's, it sees nothing of another tenant, it runs beside serve's
// requests with SQLite's locks between them, and beside another exec of
// the tenant it waits for the data folder's lock.
func TestExec(t *testing.T) {
	tree := execTenants(t)
	data := t.TempDir()
	base := []string{"--tenant-dir", tree, "--data-dir", data}
	code, out, errOut := runExec(t, "from stdin\n", append(base, "--tenant", "a", "--", "-c",
		"import os, sys; open('/data/x', 'w').write(sys.stdin.read()); print(os.getcwd(), os.environ['WHO'], os.environ['WSGI_WASM_DATA_DIR'], sorted(os.listdir('.'))); sys.exit(7)")...)
	if code != 7 || out != "/app a /data ['app.py', 'secret_a.txt', 'tenant.toml', 'tool.py']\n" {
		t.Fatalf("exit %d, out %q, err %s", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(data, "a", "x")); err != nil || string(b) != "from stdin\n" {
		t.Fatalf("the data folder holds %q, %v", b, err)
	}
	// A script of the folder, TENANT_DIR form, flags passed on.
	if code, out, errOut := runExec(t, "", append(base, filepath.Join(tree, "a"), "--", "tool.py", "--flag", "x")...); code != 0 || out != "tool ['--flag', 'x']\n" {
		t.Fatalf("tool.py: exit %d, out %q, err %s", code, out, errOut)
	}
	// Tenant b sees its own folder and data only.
	code, out, errOut = runExec(t, "", append(base, "--tenant", "b", "--", "-c",
		"import os; print(sorted(os.listdir('/app')), os.listdir('/data'), os.path.exists('/app/../a/secret_a.txt'), os.path.exists('/data/../a/x'))")...)
	if code != 0 || out != "['app.py', 'secret_b.txt', 'tenant.toml', 'tool.py'] [] False False\n" {
		t.Fatalf("b: exit %d, out %q, err %s", code, out, errOut)
	}
	// Past the data quota the write fails.
	code, _, errOut = runExec(t, "", append(base, "--tenant", "a", "--", "-c",
		"open('/data/big', 'wb').write(b'x' * (2 << 20))")...)
	if code != 1 || !strings.Contains(errOut, "OSError") || !strings.Contains(errOut, "the data folder is full") {
		t.Fatalf("past the quota: exit %d, err %s", code, errOut)
	}
	// /app is read-only.
	if code, _, errOut := runExec(t, "", append(base, "--tenant", "a", "--", "-c", "open('/app/new', 'w')")...); code != 1 || !strings.Contains(errOut, "Error") {
		t.Fatalf("a write to /app: exit %d, err %s", code, errOut)
	}
	// Beside serve: exec runs while a request of a holds an exclusive
	// transaction, sees SQLite's lock (held by serve's process), and its
	// own write waits in SQLite's busy handler until the request commits.
	serve := startServe(t, tree, "--data-dir", data)
	serve.waitFor200(t, "tenant a serving", "a.test", "http://"+serve.addr+"/", 60*time.Second)
	holding := make(chan error, 1)
	go func() {
		_, _, err := get("a.test", "http://"+serve.addr+"/hold")
		holding <- err
	}()
	time.Sleep(300 * time.Millisecond)
	code, out, errOut = runExec(t, "", append(base, "--tenant", "a", "--", "-c", `import sqlite3, time
db = sqlite3.connect("/data/db.sqlite", timeout=0, isolation_level=None)
seen = False
for _ in range(400):
    try:
        db.execute("begin immediate")
        db.execute("rollback")
    except sqlite3.OperationalError as e:
        seen = str(e)
        break
    time.sleep(0.01)
db = sqlite3.connect("/data/db.sqlite", timeout=20, isolation_level=None)
db.execute("begin immediate")
n = db.execute("select count(*) from t").fetchone()[0]
db.execute("insert into t values (2)")
db.execute("commit")
print(seen, n)`)...)
	if code != 0 || out != "database is locked 1\n" {
		t.Fatalf("exec beside a request holding the database: exit %d, out %q, err %s", code, out, errOut)
	}
	if err := <-holding; err != nil {
		t.Fatal(err)
	}
	// Two execs of a tenant: the second waits for the first's lock of the
	// data folder, here past its --lock-wait.
	first := make(chan int, 1)
	go func() {
		code, _, _ := runExec(t, "", append(base, "--tenant", "a", "--", "-c", "import time; open('/data/started', 'w').close(); time.sleep(3)")...)
		first <- code
	}()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(data, "a", "started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first exec never started")
		}
	}
	code, _, errOut = runExec(t, "", append(base, "--tenant", "a", "--lock-wait", "300ms", "--", "-c", "print(1)")...)
	if code != 1 || !strings.Contains(errOut, "stayed locked") {
		t.Fatalf("exec beside another exec with --lock-wait 300ms: exit %d, err %s", code, errOut)
	}
	if code := <-first; code != 0 {
		t.Fatalf("the first exec: exit %d", code)
	}
}

// TestExecFrameworks: Django's manage.py migrate and a command that writes
// through the ORM, whose row serve then answers with; a Flask app's own
// command (flask --app app init-db style), found as the flask module.
func TestExecFrameworks(t *testing.T) {
	tree := t.TempDir()
	for _, name := range []string{"django", "flask"} {
		src := filepath.Join("..", "..", "examples", "tenants", name)
		if _, err := os.Stat(filepath.Join(src, "site-packages", name)); err != nil {
			t.Skipf("%s not vendored (make vendor): %v", name, err)
		}
		if err := os.CopyFS(filepath.Join(tree, name), os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(tree, "django", "manage.py"), []byte(`import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
`), 0o644)
	app, err := os.ReadFile(filepath.Join(tree, "flask", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	app = append(app, `

@app.cli.command("init-db")
def init_db():
    import os
    print("initialised", os.environ.get("GREETING", "-"))
`...)
	os.WriteFile(filepath.Join(tree, "flask", "app.py"), app, 0o644)
	data := t.TempDir()
	base := []string{"--tenant-dir", tree, "--data-dir", data}
	code, out, errOut := runExec(t, "", append(base, "--tenant", "django", "--", "manage.py", "migrate")...)
	if code != 0 || !strings.Contains(out, "Applying notes.0001_initial... OK") {
		t.Fatalf("migrate: exit %d, out %s, err %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "django", "db.sqlite3")); err != nil {
		t.Fatalf("no database in the data folder: %v", err)
	}
	code, out, errOut = runExec(t, "", append(base, "--tenant", "django", "--", "manage.py", "shell", "-c",
		"from notes.models import Note; Note.objects.create(text='written by exec'); print(Note.objects.count())")...)
	if code != 0 || out != "1\n" {
		t.Fatalf("manage.py shell: exit %d, out %q, err %s", code, out, errOut)
	}
	code, out, errOut = runExec(t, "", append(base, "--tenant", "flask", "--", "flask", "--app", "app", "init-db")...)
	if code != 0 || !strings.HasPrefix(out, "initialised") {
		t.Fatalf("flask init-db: exit %d, out %q, err %s", code, out, errOut)
	}
	if code, _, _ := runExec(t, "", append(base, "--tenant", "flask", "--", "flask", "--app", "app", "no-such-command")...); code != 2 {
		t.Fatalf("an unknown flask command: exit %d, want click's 2", code)
	}
	serve := startServe(t, tree, "--data-dir", data)
	serve.waitFor200(t, "django serving", "django.localhost", "http://"+serve.addr+"/notes/", 90*time.Second)
	if code, body, err := get("django.localhost", "http://"+serve.addr+"/notes/"); err != nil || code != 200 || !strings.Contains(body, "written by exec") {
		t.Fatalf("serve after exec: %d %q %v", code, body, err)
	}
}

// TestExecDjangoCreateSuperuser: `manage.py createsuperuser --noinput` with
// DJANGO_SUPERUSER_PASSWORD given by --env creates the user in the data
// folder's database (a second exec reads it back: a superuser, its email,
// its password), and a second createsuperuser of the same name fails with
// Django's exit code. The example tenant has no auth app, so its copy here
// gets settings that add it.
func TestExecDjangoCreateSuperuser(t *testing.T) {
	src := filepath.Join("..", "..", "examples", "tenants", "django")
	if _, err := os.Stat(filepath.Join(src, "site-packages", "django")); err != nil {
		t.Skipf("django not vendored (make vendor): %v", err)
	}
	tree := t.TempDir()
	dir := filepath.Join(tree, "django")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"manage.py": "import os, sys\n\nif __name__ == '__main__':\n" +
			"    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n" +
			"    from django.core.management import execute_from_command_line\n\n" +
			"    execute_from_command_line(sys.argv)\n",
		"mysite/settings_auth.py": "from mysite.settings import *  # noqa: F403\n\n" +
			"INSTALLED_APPS = ['django.contrib.auth', 'django.contrib.contenttypes'] + INSTALLED_APPS  # noqa: F405\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	base := []string{"--tenant-dir", tree, "--data-dir", data, "--env", "DJANGO_SETTINGS_MODULE=mysite.settings_auth", "--tenant", "django"}
	if code, out, errOut := runExec(t, "", append(base, "--", "manage.py", "migrate")...); code != 0 || !strings.Contains(out, "Applying auth.0001_initial... OK") {
		t.Fatalf("migrate: exit %d, out %s, err %s", code, out, errOut)
	}
	create := append(base, "--env", "DJANGO_SUPERUSER_PASSWORD=s3cret pass, with a comma",
		"--", "manage.py", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.test")
	if code, out, errOut := runExec(t, "", create...); code != 0 || !strings.Contains(out, "Superuser created successfully.") {
		t.Fatalf("createsuperuser: exit %d, out %q, err %s", code, out, errOut)
	}
	code, out, errOut := runExec(t, "", append(base, "--", "manage.py", "shell", "-c",
		"from django.contrib.auth import get_user_model\n"+
			"u = get_user_model().objects.get(username='admin')\n"+
			"print(u.is_superuser, u.is_staff, u.email, u.check_password('s3cret pass, with a comma'), u.check_password('wrong'))")...)
	if code != 0 || out != "True True admin@example.test True False\n" {
		t.Fatalf("reading the superuser back: exit %d, out %q, err %s", code, out, errOut)
	}
	if code, out, errOut := runExec(t, "", create...); code != 1 || !strings.Contains(errOut, "That username is already taken.") {
		t.Fatalf("createsuperuser again: exit %d, out %q, err %q; want 1 and Django's refusal", code, out, errOut)
	}
}

// TestExecPythonPath: tenant.toml's python_path puts folders of the tenant
// first on sys.path for a command too, in order, before /app (a script's
// own folder takes /app's place, as python does).
func TestExecPythonPath(t *testing.T) {
	tree := t.TempDir()
	dir := filepath.Join(tree, "t")
	for name, text := range map[string]string{
		"tenant.toml":   "app = \"webapp:app\"\nhosts = [\"t.test\"]\npython_path = [\"src\", \"lib\"]\n",
		"src/webapp.py": "import helper\n",
		"lib/helper.py": "NAME = 'helper of lib'\n",
		"bin/tool.py":   "import sys, helper\nprint(sys.path[:3], helper.NAME)\n",
	} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runExec(t, "", dir, "--", "-c", "import sys, webapp; print(sys.path[:4], webapp.helper.NAME)")
	if want := "['/app/src', '/app/lib', '/app', '/app/site-packages'] helper of lib\n"; code != 0 || out != want {
		t.Fatalf("-c: exit %d, out %q, want %q; err %s", code, out, want, errOut)
	}
	code, out, errOut = runExec(t, "", dir, "--", "bin/tool.py")
	if want := "['/app/src', '/app/lib', '/app/bin'] helper of lib\n"; code != 0 || out != want {
		t.Fatalf("script: exit %d, out %q, want %q; err %s", code, out, want, errOut)
	}
}
