package testservices

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// MySQL is a database of its own on a shared MariaDB 10.11 server, which
// answers on loopback TCP with password authentication
// (mysql_native_password).
type MySQL struct {
	Host     string // 127.0.0.1
	Port     int
	User     string // may create databases (all privileges); not root
	Password string
	Database string // fresh for each call of MariaDB; utf8mb4
}

// Addr is host:port.
func (m MySQL) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Env is the database as MYSQL_HOST, MYSQL_PORT, MYSQL_USER,
// MYSQL_PASSWORD and MYSQL_DATABASE, which the outbound scripts read.
func (m MySQL) Env() []string {
	return []string{"MYSQL_HOST=" + m.Host, "MYSQL_PORT=" + strconv.Itoa(m.Port), "MYSQL_USER=" + m.User,
		"MYSQL_PASSWORD=" + m.Password, "MYSQL_DATABASE=" + m.Database}
}

type mariaServer struct {
	tr       *tree
	port     int
	password string
}

// MariaDB returns a fresh database on the process's MariaDB, started on
// first use.
func MariaDB(tb testing.TB) MySQL {
	tb.Helper()
	s := shared(tb, "mariadb", startMariaDB)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), databases.Add(1))
	if _, err := s.sql("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		tb.Fatalf("testservices: mariadb: %v", err)
	}
	return MySQL{Host: "127.0.0.1", Port: s.port, User: "test", Password: s.password, Database: name}
}

func startMariaDB(tr *tree) (*mariaServer, error) {
	dir, err := tr.tempDir("mariadb")
	if err != nil {
		return nil, err
	}
	s := &mariaServer{tr: tr, password: secret()}
	data := filepath.Join(dir, "data")
	common := []string{"--no-defaults", "--basedir=" + tr.path("usr"), "--datadir=" + data,
		"--plugin-dir=" + tr.path("usr/lib/mysql/plugin"), "--lc-messages-dir=" + tr.path("usr/share/mysql"),
		"--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"}
	// root gets no password and logs in through the Unix socket only; the
	// test user, created at every start by the init file, over TCP.
	if _, err := tr.run("usr/bin/mariadb-install-db", append(common, "--auth-root-authentication-method=socket",
		"--skip-test-db", "--skip-name-resolve")...); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	init := filepath.Join(dir, "init.sql")
	if err := tr.writeFile(init, []byte(fmt.Sprintf(
		"CREATE OR REPLACE USER 'test'@'127.0.0.1' IDENTIFIED BY '%s';\nGRANT ALL ON *.* TO 'test'@'127.0.0.1';\n", s.password))); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	err = tr.startOnFreePort("mariadbd", dir, syscall.SIGTERM, "usr/sbin/mariadbd", 30*time.Second, func(port int) []string {
		s.port = port
		return append(common,
			"--bind-address=127.0.0.1", "--port="+strconv.Itoa(port), "--socket="+filepath.Join(dir, "sock"),
			"--pid-file="+filepath.Join(dir, "pid"), "--skip-name-resolve", "--init-file="+init,
			"--innodb-flush-log-at-trx-commit=0", "--skip-log-bin", "--character-set-server=utf8mb4",
			"--collation-server=utf8mb4_general_ci", "--max-connections=50")
	}, func() error { _, err := s.sql("SELECT 1"); return err })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// sql runs SQL as the test user over TCP.
func (s *mariaServer) sql(sql string) ([]byte, error) {
	return s.tr.run("usr/bin/mariadb", "--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P", strconv.Itoa(s.port),
		"-u", "test", "-p"+s.password, "-e", sql)
}
