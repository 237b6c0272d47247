package testservices

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// RedisDB is a shared Redis 7.0 server on loopback with a password, and a
// key prefix of the caller's own.
type RedisDB struct {
	Host     string // 127.0.0.1
	Port     int
	Password string // AUTH's (the default user's)
	Prefix   string // fresh for each call of Redis: keys below it are the caller's
}

// Addr is host:port.
func (r RedisDB) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// Env is the server as REDIS_HOST, REDIS_PORT, REDIS_PASSWORD and
// REDIS_PREFIX, which the outbound scripts read.
func (r RedisDB) Env() []string {
	return []string{"REDIS_HOST=" + r.Host, "REDIS_PORT=" + strconv.Itoa(r.Port),
		"REDIS_PASSWORD=" + r.Password, "REDIS_PREFIX=" + r.Prefix}
}

type redisServer struct {
	port     int
	password string
}

// Redis returns the process's Redis, started on first use (no persistence).
func Redis(tb testing.TB) RedisDB {
	tb.Helper()
	s := shared(tb, "redis", startRedis)
	return RedisDB{Host: "127.0.0.1", Port: s.port, Password: s.password,
		Prefix: fmt.Sprintf("t%d_%d:", os.Getpid(), databases.Add(1))}
}

func startRedis(tr *tree) (*redisServer, error) {
	dir, err := tr.tempDir("redis")
	if err != nil {
		return nil, err
	}
	s := &redisServer{password: secret()}
	err = tr.startOnFreePort("redis-server", dir, syscall.SIGTERM, "usr/bin/redis-server", 10*time.Second, func(port int) []string {
		s.port = port
		return []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir, "--requirepass", s.password,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--databases", "16"}
	}, s.ping)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// ping authenticates and pings in RESP, the protocol's inline form.
func (s *redisServer) ping() error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "AUTH %s\r\nPING\r\n", s.password); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for _, want := range []string{"+OK\r\n", "+PONG\r\n"} {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if line != want {
			return fmt.Errorf("redis answered %q", line)
		}
	}
	return nil
}
