package testservices

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// timed runs start and logs how long it took (the first call in the
// process includes the server's start).
func timed[T any](t *testing.T, what string, start func(testing.TB) T) T {
	t.Helper()
	t0 := time.Now()
	v := start(t)
	t.Logf("%s ready in %v", what, time.Since(t0).Round(time.Millisecond))
	return v
}

// same checks that a script selected what it inserted.
func same(t *testing.T, r map[string]any, in, out string) {
	t.Helper()
	if r[in] == nil || r[in] != r[out] {
		t.Fatalf("%s %v, %s %v: %v", in, r[in], out, r[out], r)
	}
}

func TestPostgresPg8000(t *testing.T) {
	pg := timed(t, "postgres", Postgres)
	r := RunNative(t, "pg8000_roundtrip.py", pg.Env()...)
	same(t, r, "inserted", "selected")
	if r["ssl"] != false || !strings.HasPrefix(r["server_version"].(string), "15.") {
		t.Fatalf("want PostgreSQL 15 without TLS: %v", r)
	}
	t.Log(r["driver"], r["server_version"])
}

func TestPostgresFreshDatabases(t *testing.T) {
	a, b := Postgres(t), Postgres(t)
	if a.Database == b.Database || a.Port != b.Port {
		t.Fatalf("want two databases on one server: %+v %+v", a, b)
	}
	if want := "postgresql://test:" + a.Password + "@" + a.Addr() + "/" + a.Database; a.URL() != want {
		t.Fatalf("URL %q, want %q", a.URL(), want)
	}
}

func TestPostgresTLS(t *testing.T) {
	pg := timed(t, "postgres (TLS)", PostgresTLS)
	if len(pg.CAPEM) == 0 {
		t.Fatal("no CA")
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pg.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r := RunNative(t, "pg8000_roundtrip.py", append(pg.Env(), "PGSSLMODE=require", "PGSSLROOTCERT="+ca)...)
	same(t, r, "inserted", "selected")
	if r["ssl"] != true {
		t.Fatalf("want a TLS connection: %v", r)
	}
	// Without TLS the server refuses the connection (hostnossl reject);
	// pg8000 1.10.6 reports any refusal at start-up as a failed md5
	// authentication.
	if _, out, err := runNative(t, "pg8000_roundtrip.py", pg.Env()...); err == nil || !strings.Contains(out, "authentication failed") {
		t.Fatalf("a plain connection to the TLS server: err %v\n%s", err, out)
	}
	// Verified against the wrong CA, the certificate is refused.
	other, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, out, err := runNative(t, "pg8000_roundtrip.py", append(pg.Env(), "PGSSLMODE=require", "PGSSLROOTCERT="+ca)...); err == nil || !strings.Contains(out, "CERTIFICATE_VERIFY_FAILED") {
		t.Fatalf("a certificate from another CA: err %v\n%s", err, out)
	}
}

func TestMariaDBPyMySQL(t *testing.T) {
	db := timed(t, "mariadb", MariaDB)
	r := RunNative(t, "pymysql_roundtrip.py", db.Env()...)
	same(t, r, "inserted", "selected")
	if !strings.Contains(r["server_version"].(string), "MariaDB") {
		t.Fatalf("want MariaDB: %v", r)
	}
	t.Log(r["driver"], r["server_version"])
}

func TestRedisPy(t *testing.T) {
	rd := timed(t, "redis", Redis)
	r := RunNative(t, "redis_roundtrip.py", rd.Env()...)
	same(t, r, "set", "got")
	if r["incr"] != 2.0 || r["ttl_set"] != true || strings.Join(toStrings(r["pipeline"]), ",") != "a,b,c" {
		t.Fatalf("unexpected: %v", r)
	}
	if Redis(t).Prefix == rd.Prefix {
		t.Fatal("want a fresh prefix per call")
	}
	t.Log(r["driver"], r["server_version"])
}

func toStrings(v any) []string {
	var s []string
	l, _ := v.([]any)
	for _, x := range l {
		str, _ := x.(string)
		s = append(s, str)
	}
	return s
}

func TestSQLAlchemyPyMySQL(t *testing.T) {
	db := MariaDB(t)
	url := "mysql+pymysql://" + db.User + ":" + db.Password + "@" + db.Addr() + "/" + db.Database + "?charset=utf8mb4"
	r := RunNative(t, "sqlalchemy_roundtrip.py", "SQLALCHEMY_URL="+url)
	same(t, r, "inserted", "selected")
	if r["dialect"] != "mysql+pymysql" || r["cext"] != false {
		t.Fatalf("want mysql+pymysql without C extensions: %v", r)
	}
	t.Log(r["driver"])
}

// SQLAlchemy 1.4's pg8000 dialect wants pg8000 1.16.6; Debian 12 has
// 1.10.6. This test notices when that changes.
func TestSQLAlchemyPg8000TooOld(t *testing.T) {
	pg := Postgres(t)
	url := "postgresql+pg8000://" + pg.User + ":" + pg.Password + "@" + pg.Addr() + "/" + pg.Database
	_, out, err := runNative(t, "sqlalchemy_roundtrip.py", "SQLALCHEMY_URL="+url)
	if err == nil || !strings.Contains(out, "pg8000 1.16.6 or greater is required") {
		t.Fatalf("SQLAlchemy on Debian's pg8000: err %v\n%s", err, out)
	}
}

func TestRequestsHTTPS(t *testing.T) {
	url, caPEM := HTTPS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body)})
	}))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r := RunNative(t, "requests_https.py", "HTTPS_URL="+url, "CA_FILE="+ca)
	get, _ := r["get"].(map[string]any)
	post, _ := r["post"].(map[string]any)
	token, _ := r["token"].(string)
	if get["method"] != "GET" || get["query"] != "token="+token || post["method"] != "POST" ||
		post["body"] != `{"token": "`+token+`"}` || r["default_store_refused"] != true {
		t.Fatalf("unexpected: %v", r)
	}
	t.Log(r["driver"], "certifi.where() =", r["certifi_where"])
}

func TestDjangoMySQL(t *testing.T) {
	db := MariaDB(t)
	r := RunNative(t, "django_mysql.py", db.Env()...)
	if r["migrated"] != true || r["authenticated"] != true || r["wrong_password_refused"] != true || r["vendor"] != "mysql" {
		t.Fatalf("unexpected: %v", r)
	}
	t.Log(r["driver"])
}

func TestCAServerConfig(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	url, _ := HTTPS(t, http.NotFoundHandler())
	// A client trusting another CA refuses the server.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if _, err := c.Get(url); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate error, got %v", err)
	}
	cfg, err := ca.ServerConfig("localhost")
	if err != nil || len(cfg.Certificates) != 1 {
		t.Fatalf("ServerConfig: %v", err)
	}
}

// TestNotesPgTenantNative runs the notes-pg example tenant's app natively
// (its own vendored Flask and pg8000) against PostgreSQL, then against a
// port nobody listens on.
func TestNotesPgTenantNative(t *testing.T) {
	dir, err := filepath.Abs("../../examples/tenants/notes-pg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "site-packages", "pg8000")); err != nil {
		unavailable(t, "notes-pg not vendored (run `make vendor`): %v", err)
	}
	pg := Postgres(t)
	r := RunNative(t, "notes_pg_app.py", "NOTES_APP_DIR="+dir, "NOTES_DATABASE_URL="+pg.URL())
	added, _ := r["added"].(map[string]any)
	got, _ := r["got"].(map[string]any)
	listed, _ := r["listed"].([]any)
	lost, _ := r["lost"].([]any)
	if added["text"] != "a note é ☃" || got["text"] != added["text"] || len(listed) != 1 || r["missing"] != 404.0 {
		t.Fatalf("notes: %v", r)
	}
	if len(lost) != 2 || lost[0] != 503.0 || !strings.Contains(lost[1].(string), "connection to PostgreSQL was lost") || r["reconnected"] != 200.0 {
		t.Fatalf("after the connection was ended: %v", r)
	}

	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	down := "postgresql://notes:notes@127.0.0.1:" + strconv.Itoa(port) + "/notes"
	r = RunNative(t, "notes_pg_app.py", "NOTES_APP_DIR="+dir, "NOTES_DATABASE_URL="+down, "NOTES_DOWN=1")
	if r["index"] != 200.0 || r["notes"] != 503.0 || !strings.Contains(r["body"].(string), "127.0.0.1:"+strconv.Itoa(port)+" (database notes) is unreachable") {
		t.Fatalf("PostgreSQL down: %v", r)
	}
	t.Logf("503 body: %s", r["body"])
}
