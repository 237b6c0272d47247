package hostabi

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
)

// fakeMemory is linear memory of a fixed size; only Read is used by the
// net_* functions.
type fakeMemory struct {
	api.Memory
	b []byte
}

func (m *fakeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.b)) {
		return nil, false
	}
	return m.b[off : off+n : off+n], true
}

type fakeModule struct {
	api.Module
	mem *fakeMemory
}

func (m fakeModule) Memory() api.Memory { return m.mem }

// pipeDialer connects to an in-memory peer that echoes what it reads.
type pipeDialer struct{}

func (pipeDialer) Dial(ctx context.Context, host string, port int) (net.Conn, error) {
	if host == "deny" {
		return outbound.Deny{}.Dial(ctx, host, port)
	}
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		buf := make([]byte, 512)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			if _, err := b.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	return a, nil
}

func (pipeDialer) RootCAs() *x509.CertPool { return x509.NewCertPool() }

// FuzzNetFunctions: whatever numbers a guest passes to the net_* host
// functions, they return a count, a handle or -errno (never a host panic
// but the deadline's trap), and never touch memory outside the ranges
// they were given.
func FuzzNetFunctions(f *testing.F) {
	f.Add(uint8(0), uint32(0), uint32(9), uint32(80), uint32(1000), uint32(0), []byte("localhost"))
	f.Add(uint8(1), uint32(0), uint32(0), uint32(5), uint32(10), uint32(0), []byte("hello"))
	f.Add(uint8(2), uint32(0), uint32(0), uint32(64), uint32(10), uint32(1), []byte{})
	f.Add(uint8(3), uint32(0), uint32(2), uint32(10), uint32(0), uint32(0), []byte{0, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0})
	f.Add(uint8(7), uint32(0), uint32(0), uint32(24), uint32(10), uint32(0), []byte("verify\x002\x00alpn\x00h2\x00"))
	f.Add(uint8(6), uint32(0), uint32(5), uint32(0), uint32(64), uint32(0), []byte{})
	f.Add(uint8(0), uint32(0xfffffff0), uint32(0x20), uint32(80), uint32(0xffffffff), uint32(0), []byte("deny"))
	funcs := []api.GoModuleFunc{netConnect, netSend, netRecv, netPoll, netShutdown, netClose, netInfo, netTLSHandshake, netLastError}
	f.Fuzz(func(t *testing.T, which uint8, a0, a1, a2, a3, a4 uint32, data []byte) {
		mem := &fakeMemory{b: make([]byte, 4096)}
		copy(mem.b, data)
		m := fakeModule{mem: mem}
		conns := NewConns(pipeDialer{}, 2)
		defer conns.Close()
		ctx, cancel := context.WithTimeout(WithConns(context.Background(), conns), 20*time.Millisecond)
		defer cancel()
		// One open connection, handle 0, for the other functions to act on.
		copy(mem.b[4000:], "peer")
		stack := []uint64{4000, 4, 1, 100, 0}
		netConnect(ctx, m, stack)
		if int32(stack[0]) != 0 {
			t.Fatalf("setup connect = %d", int32(stack[0]))
		}
		fn := funcs[int(which)%len(funcs)]
		stack = []uint64{uint64(a0), uint64(a1), uint64(a2), uint64(a3), uint64(a4)}
		func() {
			defer func() {
				if r := recover(); r != nil {
					if err, ok := r.(error); ok && errors.Is(err, context.DeadlineExceeded) {
						return // the deadline's trap, as a request's
					}
					t.Fatalf("panic: %v", r)
				}
			}()
			fn(ctx, m, stack)
		}()
		if r := int32(stack[0]); r < 0 && -r > 76 {
			t.Fatalf("result %d is no WASI errno", r)
		}
		if conns.Open() > 2 {
			t.Fatalf("%d connections open, the cap is 2", conns.Open())
		}
	})
}

// FuzzDecodeTLSConfig: any configuration decodes or is refused, without
// a panic.
func FuzzDecodeTLSConfig(f *testing.F) {
	f.Add([]byte("server_name\x00example.com\x00verify\x002\x00check_hostname\x001\x00"))
	f.Add([]byte("ca_pem\x00-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\x00"))
	f.Add([]byte("ca_der_b64\x00MAA=\x00alpn\x00\x00"))
	f.Add([]byte("min_version\x00-2\x00max_version\x00772\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeTLSConfig(b)
		if err != nil {
			return
		}
		if c.Verify < 0 || c.Verify > 2 || len(c.ALPN) > len(b) {
			t.Fatalf("decoded %+v from %q", c, b)
		}
	})
}
