package hostabi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/internal/guestmem"
	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
)

// passOn are the host functions that take guest pointers, in the order
// callerModule imports and re-exports them.
var passOn = []string{
	hostabi.FuncRequestEnviron, hostabi.FuncInputRead, hostabi.FuncResponseStart,
	hostabi.FuncResponseWrite, hostabi.FuncLogWrite,
}

// callerModule is a guest that only passes its arguments on: it imports the
// functions of passOn and exports each under its own name, with a memory of
// pages pages, so that a test calls a host function as a hostile guest
// would, with any pointer and length.
func callerModule(pages uint32) []byte {
	vec := func(items ...[]byte) []byte {
		out := wasmbin.AppendU32(nil, uint32(len(items)))
		return append(out, bytes.Join(items, nil)...)
	}
	name := func(s string) []byte { return append(wasmbin.AppendU32(nil, uint32(len(s))), s...) }
	section := func(id byte, body []byte) []byte {
		return append(wasmbin.AppendU32([]byte{id}, uint32(len(body))), body...)
	}
	typeOf := func(fn string) byte { // 0: (i32 i32) -> i32, 1: (i32 i32 i32) -> ()
		if fn == hostabi.FuncLogWrite {
			return 1
		}
		return 0
	}
	var imports, funcs, exports, bodies [][]byte
	for i, fn := range passOn {
		imports = append(imports, bytes.Join([][]byte{name(hostabi.ModuleName), name(fn), {wasmbin.KindFunc, typeOf(fn)}}, nil))
		funcs = append(funcs, []byte{typeOf(fn)})
		exports = append(exports, append(name(fn), wasmbin.KindFunc, byte(len(passOn)+i)))
		code := []byte{0x00, 0x20, 0x00, 0x20, 0x01} // no locals; local.get 0; local.get 1
		if typeOf(fn) == 1 {
			code = append(code, 0x20, 0x02)
		}
		code = append(code, 0x10, byte(i), 0x0b) // call i; end
		bodies = append(bodies, append([]byte{byte(len(code))}, code...))
	}
	exports = append(exports, append(name("memory"), wasmbin.KindMemory, 0))
	return bytes.Join([][]byte{
		wasmbin.Magic,
		section(wasmbin.SecType, vec([]byte{0x60, 2, 0x7f, 0x7f, 1, 0x7f}, []byte{0x60, 3, 0x7f, 0x7f, 0x7f, 0})),
		section(wasmbin.SecImport, vec(imports...)),
		section(wasmbin.SecFunction, vec(funcs...)),
		section(wasmbin.SecMemory, vec(wasmbin.AppendU32([]byte{0x00}, pages))),
		section(wasmbin.SecExport, vec(exports...)),
		section(wasmbin.SecCode, vec(bodies...)),
	}, nil)
}

// newCaller instantiates callerModule with the wsgi_host module.
func newCaller(tb testing.TB, pages uint32) api.Module {
	tb.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	tb.Cleanup(func() { r.Close(ctx) })
	if err := hostabi.Instantiate(ctx, r); err != nil {
		tb.Fatal(err)
	}
	mod, err := r.Instantiate(ctx, callerModule(pages))
	if err != nil {
		tb.Fatal(err)
	}
	return mod
}

// response records what a guest sent, without keeping the body.
type response struct {
	status    int
	headers   []hostabi.Header
	bodyBytes int
}

func (r *response) Start(status int, headers []hostabi.Header) error {
	r.status, r.headers = status, headers
	return nil
}

func (r *response) Write(p []byte) error {
	r.bodyBytes += len(p)
	return nil
}

func (r *response) Settle() {}

// allocated is how many bytes of Go heap f allocated.
func allocated(f func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	f()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLogWriteBounded: one log_write of 50 MB reaches the logger as
// MaxLogLine bytes and the marker; the host allocates about that, not the
// message's size, even for a logger that makes a string of what it gets.
func TestLogWriteBounded(t *testing.T) {
	const size = 50_000_000
	mod := newCaller(t, size/65536+1)
	msg := guestmem.Read(mod.Memory(), 0, size)
	for i := range msg {
		msg[i] = 'x'
	}
	var got string
	ctx := hostabi.WithLogger(context.Background(), func(level int32, msg []byte) { got = string(msg) })
	n := allocated(func() {
		if _, err := mod.ExportedFunction(hostabi.FuncLogWrite).Call(ctx, hostabi.LogInfo, 0, size); err != nil {
			t.Fatal(err)
		}
	})
	want := fmt.Sprintf("… [truncated %d bytes]", size-hostabi.MaxLogLine)
	if len(got) != hostabi.MaxLogLine+len(want) || !strings.HasSuffix(got, want) {
		t.Fatalf("the logger got %d bytes ending %q", len(got), got[max(0, len(got)-40):])
	}
	if n > 1<<20 {
		t.Fatalf("log_write of %d bytes allocated %d bytes on the host", size, n)
	}
}

// TestResponseStartRefusalIsFinal: once response_start refused status and
// headers, nothing else the guest sends for that request goes out, and the
// host knows why (it answers 502, runtime's ServeHTTP).
func TestResponseStartRefusalIsFinal(t *testing.T) {
	mod := newCaller(t, 1)
	resp := &response{}
	x := &hostabi.Exchange{Response: resp}
	ctx := hostabi.WithExchange(context.Background(), x)
	call := func(fn string, data []byte) int32 {
		t.Helper()
		guestmem.Write(mod.Memory(), 0, data)
		res, err := mod.ExportedFunction(fn).Call(ctx, 0, uint64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		return int32(res[0])
	}
	if rc := call(hostabi.FuncResponseStart, encodeStart("101 Switching Protocols", "Upgrade", "websocket")); rc != -1 || x.Refused() == nil {
		t.Fatalf("101: result %d, refused %v", rc, x.Refused())
	}
	if rc := call(hostabi.FuncResponseStart, encodeStart("200 OK")); rc != -1 {
		t.Fatalf("a valid response_start after a refusal: result %d", rc)
	}
	if rc := call(hostabi.FuncResponseWrite, []byte("body")); rc != -1 {
		t.Fatalf("response_write after a refusal: result %d", rc)
	}
	if sent, _ := x.Finish(); sent || resp.status != 0 || resp.bodyBytes != 0 || x.HeadersSent() {
		t.Fatalf("after a refusal: sent %v, status %d, %d body bytes", sent, resp.status, resp.bodyBytes)
	}
	if !strings.Contains(x.Refused().Error(), "status 101 outside 200-599") {
		t.Fatalf("refusal names no reason: %v", x.Refused())
	}
}

// TestHostCallsOutOfRange: every pointer argument outside linear memory,
// or a length that runs past its end or wraps around, traps the guest
// with a *guestmem.TrapError and never fails the host otherwise.
func TestHostCallsOutOfRange(t *testing.T) {
	mod := newCaller(t, 1)
	x := &hostabi.Exchange{Environ: []byte("K\x00v\x00"), Body: strings.NewReader("body"), Response: &response{}}
	ctx := hostabi.WithLogger(hostabi.WithExchange(context.Background(), x), func(int32, []byte) {})
	ranges := [][2]uint64{{65536, 1}, {65535, 2}, {0, 65537}, {0xffffffff, 2}, {1, 0xffffffff}, {0xffffffff, 0xffffffff}}
	for _, fn := range passOn {
		for _, r := range ranges {
			args := r[:]
			if fn == hostabi.FuncLogWrite {
				args = []uint64{hostabi.LogError, r[0], r[1]}
			}
			_, err := mod.ExportedFunction(fn).Call(ctx, args...)
			var trap *guestmem.TrapError
			if !errors.As(err, &trap) {
				t.Errorf("%s(%d, %d): %v, want a guestmem trap", fn, r[0], r[1], err)
			}
		}
	}
}

// FuzzHostCalls calls each host function as a hostile guest would: any
// pointer, length and memory contents, inside a request or not. The host
// must only ever trap the guest (a *guestmem.TrapError or ErrOutOfOrder),
// never fail with a Go runtime error, and never allocate in proportion to
// a guest-chosen length.
func FuzzHostCalls(f *testing.F) {
	const pages = 16 // 1 MiB
	f.Add(uint8(2), uint32(0), uint32(22), uint32(0), true, encodeStart("200 OK", "X-A", "b"))
	f.Add(uint8(2), uint32(0), uint32(1<<20), uint32(0), true, encodeStart("101 Switching Protocols"))
	f.Add(uint8(4), uint32(1), uint32(0), uint32(1<<20), true, []byte("log"))
	f.Add(uint8(4), uint32(1), uint32(0xffffff00), uint32(0x200), false, []byte("log"))
	f.Add(uint8(0), uint32(0), uint32(1<<20), uint32(0), true, []byte{})
	f.Add(uint8(1), uint32(1<<20-1), uint32(0xffffffff), uint32(0), true, []byte{})
	f.Add(uint8(3), uint32(0), uint32(1<<20), uint32(0), true, []byte("body"))
	f.Add(uint8(3), uint32(0), uint32(4), uint32(0), false, []byte("body"))
	mod := newCaller(f, pages)
	f.Fuzz(func(t *testing.T, which uint8, a, b, c uint32, inRequest bool, payload []byte) {
		fn := passOn[int(which)%len(passOn)]
		guestmem.Write(mod.Memory(), 0, payload[:min(len(payload), pages<<16)])
		args := []uint64{uint64(a), uint64(b)}
		if fn == hostabi.FuncLogWrite {
			args = []uint64{uint64(a), uint64(b), uint64(c)}
		}
		ctx := context.Background()
		logged := -1
		ctx = hostabi.WithLogger(ctx, func(_ int32, msg []byte) { logged = len(msg) })
		resp := &response{}
		x := &hostabi.Exchange{Environ: encodeStart("REQUEST_METHOD", "GET"), Body: bytes.NewReader(payload), Response: resp}
		if inRequest {
			ctx = hostabi.WithExchange(ctx, x)
		}
		var err error
		n := allocated(func() { _, err = mod.ExportedFunction(fn).Call(ctx, args...) })
		var trap *guestmem.TrapError
		var goErr goruntime.Error
		switch {
		case errors.As(err, &goErr):
			t.Fatalf("%s%v failed the host: %v", fn, args, err)
		case err != nil && !errors.As(err, &trap) && !errors.Is(err, hostabi.ErrOutOfOrder):
			t.Fatalf("%s%v: unexpected error %v", fn, args, err)
		}
		if n > 256<<10 {
			t.Fatalf("%s%v allocated %d bytes on the host", fn, args, n)
		}
		if logged > hostabi.MaxLogLine+64 {
			t.Fatalf("log_write passed on %d bytes", logged)
		}
		if resp.status != 0 && (resp.status < 200 || resp.status > 599 || len(resp.headers) > hostabi.MaxResponseHeaders) {
			t.Fatalf("status %d with %d headers went out", resp.status, len(resp.headers))
		}
	})
}
