package testservices

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// PG is a database of its own on a shared PostgreSQL 15 server, which
// answers on loopback TCP with password authentication (md5: Debian 12's
// pg8000 1.10.6 has no SCRAM).
type PG struct {
	Host     string // 127.0.0.1
	Port     int
	User     string // owns Database; not a superuser
	Password string
	Database string // fresh for each call of Postgres or PostgresTLS
	// CAPEM is, from PostgresTLS, the certificate (PEM) of the test CA that
	// signed the server's (for 127.0.0.1 and localhost); nil otherwise.
	CAPEM []byte
}

// Addr is host:port.
func (p PG) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// URL is the database's postgresql:// URL (SQLAlchemy wants
// postgresql+pg8000:// in its place).
func (p PG) URL() string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(p.User, p.Password), Host: p.Addr(), Path: "/" + p.Database}
	return u.String()
}

// Env is the database as libpq's variables (PGHOST, PGPORT, PGUSER,
// PGPASSWORD, PGDATABASE), which the outbound scripts read.
func (p PG) Env() []string {
	return []string{"PGHOST=" + p.Host, "PGPORT=" + strconv.Itoa(p.Port), "PGUSER=" + p.User,
		"PGPASSWORD=" + p.Password, "PGDATABASE=" + p.Database}
}

// pgServer is a running PostgreSQL.
type pgServer struct {
	tr       *tree
	port     int
	sockDir  string // its Unix socket, for the superuser (trust, no password)
	password string // the test user's
	caPEM    []byte
}

var databases atomic.Int64

// Postgres returns a fresh database on the process's PostgreSQL, started
// on first use.
func Postgres(tb testing.TB) PG {
	tb.Helper()
	return shared(tb, "postgres", func(tr *tree) (*pgServer, error) { return startPostgres(tr, nil) }).database(tb)
}

// PostgresTLS returns a fresh database on a second PostgreSQL, which takes
// TCP connections over TLS only (ssl = on, hostnossl rejected), with a
// certificate from the test CA in PG.CAPEM.
func PostgresTLS(tb testing.TB) PG {
	tb.Helper()
	return shared(tb, "postgres-tls", func(tr *tree) (*pgServer, error) {
		ca, err := NewCA()
		if err != nil {
			return nil, err
		}
		return startPostgres(tr, ca)
	}).database(tb)
}

func startPostgres(tr *tree, ca *CA) (*pgServer, error) {
	dir, err := tr.tempDir("pg")
	if err != nil {
		return nil, err
	}
	s := &pgServer{tr: tr, sockDir: dir, password: secret()}
	data := filepath.Join(dir, "data")
	bin := "usr/lib/postgresql/15/bin/"
	// The superuser has no password: it logs in through the Unix socket
	// only, in a folder only its account can enter.
	if _, err := tr.run(bin+"initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--no-locale",
		"--auth-local=trust", "--auth-host=reject", "--no-sync", "--no-instructions"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	hba := "local all all trust\nhost all all 127.0.0.1/32 md5\n"
	args := []string{"-D", data, "-h", "127.0.0.1", "-k", dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "password_encryption=md5", "-c", "max_connections=50", "-c", "shared_buffers=16MB"}
	if ca != nil {
		cert, key, err := ca.Issue("127.0.0.1", "localhost")
		if err == nil {
			err = tr.writeFile(filepath.Join(dir, "server.crt"), cert)
		}
		if err == nil {
			err = tr.writeFile(filepath.Join(dir, "server.key"), key)
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.caPEM = ca.CertPEM
		hba = "local all all trust\nhostssl all all 127.0.0.1/32 md5\nhostnossl all all 127.0.0.1/32 reject\n"
		args = append(args, "-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(dir, "server.crt"),
			"-c", "ssl_key_file="+filepath.Join(dir, "server.key"))
	}
	if err := tr.writeFile(filepath.Join(data, "pg_hba.conf"), []byte(hba)); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Retried on another port if the one picked was taken meanwhile; the
	// data folder is reused (a failed start leaves it as it was).
	err = tr.startOnFreePort("postgres", dir, syscall.SIGINT, bin+"postgres", 30*time.Second, func(port int) []string {
		s.port = port
		return append(args, "-p", strconv.Itoa(port))
	}, func() error { _, err := s.psql("SELECT 1"); return err })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if _, err := s.psql(fmt.Sprintf("CREATE ROLE test LOGIN PASSWORD '%s'", s.password)); err != nil {
		return nil, err
	}
	return s, nil
}

// psql runs SQL as the superuser.
func (s *pgServer) psql(sql string) ([]byte, error) {
	return s.tr.run("usr/lib/postgresql/15/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.sockDir,
		"-p", strconv.Itoa(s.port), "-U", "postgres", "-d", "postgres", "-c", sql)
}

func (s *pgServer) database(tb testing.TB) PG {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), databases.Add(1))
	if _, err := s.psql("CREATE DATABASE " + name + " OWNER test"); err != nil {
		tb.Fatalf("testservices: postgres: %v", err)
	}
	return PG{Host: "127.0.0.1", Port: s.port, User: "test", Password: s.password, Database: name, CAPEM: s.caPEM}
}
