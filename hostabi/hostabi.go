// Package hostabi is the host half of the contract in ABI.md: the "wsgi_host"
// module of host functions that the guest imports, the names of the guest's
// exports, and the per-request Exchange those functions act on. It knows
// nothing of HTTP servers or pools; the pool package adapts an HTTP request
// to an Exchange.
package hostabi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/internal/guestmem"
)

// Version is the ABI version this host speaks (ABI.md "Version").
const Version = 3

// ModuleName is the import module of the host functions (ABI.md "Host imports").
const ModuleName = "wsgi_host"

// Host function names (ABI.md "Host imports").
const (
	FuncRequestEnviron = "request_environ"
	FuncInputRead      = "input_read"
	FuncResponseStart  = "response_start"
	FuncResponseWrite  = "response_write"
	FuncLogWrite       = "log_write"
	FuncInterrupt      = "interrupt"
)

// Guest export names (ABI.md "Guest exports").
const (
	ExportInitialize = "_initialize"
	ExportVersion    = "wsgi_abi_version"
	ExportInit       = "wsgi_init"
	// ExportInitBase and ExportInitApp are wsgi_init in two steps, so that
	// an image taken between them can start every tenant (ABI.md "Base
	// images").
	ExportInitBase = "wsgi_init_base"
	ExportInitApp  = "wsgi_init_app"
	ExportHandle   = "wsgi_handle"
	ExportPoll     = "wsgi_interrupt_poll"
	// ExportBeforeSnapshot and ExportAfterRestore bracket a snapshot
	// (ABI.md "Snapshots").
	ExportBeforeSnapshot = "wsgi_before_snapshot"
	ExportAfterRestore   = "wsgi_after_restore"
	// ExportInterruptFlag is the exported i32 global whose value is the
	// address of the interrupt word (ABI.md "Interruption").
	ExportInterruptFlag = "wsgi_interrupt_flag"
)

// Results of wsgi_init, wsgi_init_base and wsgi_init_app (ABI.md
// "wsgi_init", "Base images").
const (
	InitOK          = 0
	InitNoStart     = 1
	InitAppError    = 2
	InitCalledTwice = 3
)

// Results of wsgi_before_snapshot and wsgi_after_restore (ABI.md
// "Snapshots").
const (
	SnapshotOK       = 0
	SnapshotFileOpen = 1
	SnapshotRaised   = 2
	SnapshotNotReady = 3
)

// Results of wsgi_handle (ABI.md "wsgi_handle").
const (
	HandleOK         = 0
	HandleAppError   = 1
	HandleClientGone = 2
	HandleNotReady   = 3
	HandleReplace    = 4
)

// Log levels of log_write (ABI.md "log_write").
const (
	LogInfo    = 0
	LogError   = 1
	LogWarning = 2
	LogDebug   = 3
)

// Responder receives the response of one request.
type Responder interface {
	// Start sends the status line and headers. It is called once, before the
	// first Write or when the request ends.
	Start(status int, headers []Header) error
	// Write sends one body chunk and flushes it to the client before it
	// returns, but for the chunk that completes a body of declared length,
	// which it may hold back until Settle (ABI.md "response_write").
	Write(p []byte) error
	// Settle flushes what Write held back, if anything. The host calls it
	// before the guest waits or computes at length (a check-in, a network
	// call, a key derivation, a read of the request body); whoever called
	// wsgi_handle calls it after the call.
	Settle()
}

// Header is one response header as the app set it.
type Header struct{ Name, Value string }

// Logger receives the guest's log_write calls.
type Logger func(level int32, msg []byte)

// Exchange is the state of one request while the guest serves it: what the
// host functions read from and write to. Create one per request.
type Exchange struct {
	// Environ is the encoded CGI environ (see EncodeEnviron).
	Environ []byte
	// Body is the request body; nil means empty.
	Body io.Reader
	// Response receives status, headers and body.
	Response Responder

	pending     *pendingStart
	headersSent bool
	bodyErr     error
	refused     error
}

type pendingStart struct {
	status  int
	headers []Header
}

// HeadersSent reports whether Start has been called on the Responder.
func (x *Exchange) HeadersSent() bool { return x.headersSent }

// Refused is why the host refused the guest's status and headers, or nil.
// A refusal is final for the request (ABI.md "response_start"): nothing of
// the guest's response is sent, and the host answers 502 in its stead.
func (x *Exchange) Refused() error { return x.refused }

// Finish sends the recorded headers if the guest never wrote a body chunk.
// It reports false when the guest recorded no status at all.
func (x *Exchange) Finish() (bool, error) {
	if x.headersSent {
		return true, nil
	}
	if x.pending == nil {
		return false, nil
	}
	return true, x.sendHeaders()
}

func (x *Exchange) sendHeaders() error {
	x.headersSent = true
	return x.Response.Start(x.pending.status, x.pending.headers)
}

type exchangeKey struct{}
type loggerKey struct{}
type interrupterKey struct{}

// Interrupter answers the guest's interrupt calls (ABI.md "Interruption").
type Interrupter interface {
	// CheckIn clears the interrupt word and returns an error when the guest
	// must stop; the guest then traps with that error.
	CheckIn() error
}

// WithInterrupter routes the guest's interrupt calls made with ctx to it.
func WithInterrupter(ctx context.Context, it Interrupter) context.Context {
	return context.WithValue(ctx, interrupterKey{}, it)
}

// WithExchange makes x the current request of the guest calls made with ctx.
func WithExchange(ctx context.Context, x *Exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, x)
}

// WithLogger routes the guest's log_write calls made with ctx to l.
func WithLogger(ctx context.Context, l Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// ErrOutOfOrder is the trap cause of a request function called outside
// wsgi_handle.
var ErrOutOfOrder = errors.New("hostabi: request function called outside wsgi_handle")

func current(ctx context.Context) *Exchange {
	x, _ := ctx.Value(exchangeKey{}).(*Exchange)
	if x == nil {
		panic(ErrOutOfOrder)
	}
	return x
}

// Instantiate defines the wsgi_host module in r. Call it once per runtime,
// before instantiating the reactor.
func Instantiate(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(ModuleName)
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(requestEnviron), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf", "limit").Export(FuncRequestEnviron)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(inputRead), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf", "limit").Export(FuncInputRead)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(responseStart), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("ptr", "len").Export(FuncResponseStart)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(responseWrite), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("ptr", "len").Export(FuncResponseWrite)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(logWrite), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("level", "ptr", "len").Export(FuncLogWrite)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(interrupt), nil, nil).Export(FuncInterrupt)
	for _, f := range netFuncs {
		sig := HostImports[f.name]
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, sig.Params, sig.Results).
			WithParameterNames(f.params...).Export(f.name)
	}
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(pbkdf2HMAC), HostImports[FuncPBKDF2HMAC].Params, HostImports[FuncPBKDF2HMAC].Results).
		WithParameterNames("hash", "hash_len", "password", "password_len", "salt", "salt_len", "iterations", "out", "dklen").Export(FuncPBKDF2HMAC)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(fileLock), HostImports[FuncFileLock].Params, HostImports[FuncFileLock].Results).
		WithParameterNames("dev", "ino", "op", "type", "start", "len").Export(FuncFileLock)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("hostabi: instantiate %s: %w", ModuleName, err)
	}
	return nil
}

const (
	resultFailed = ^uint64(0) >> 32 // -1 as i32
)

// requestEnviron: ABI.md "request_environ".
func requestEnviron(ctx context.Context, m api.Module, stack []uint64) {
	x := current(ctx)
	dst := guestmem.Read(m.Memory(), uint32(stack[0]), uint32(stack[1]))
	if len(x.Environ) <= len(dst) {
		copy(dst, x.Environ)
	}
	stack[0] = uint64(uint32(len(x.Environ)))
}

// inputRead: ABI.md "input_read".
func inputRead(ctx context.Context, m api.Module, stack []uint64) {
	settle(ctx)
	x := current(ctx)
	buf, limit := uint32(stack[0]), uint32(stack[1])
	dst := guestmem.Read(m.Memory(), buf, limit)
	if x.Body == nil || limit == 0 || x.bodyErr == io.EOF {
		stack[0] = 0
		return
	}
	for {
		n, err := x.Body.Read(dst)
		if n > 0 {
			if err != nil {
				x.bodyErr = err
			}
			stack[0] = uint64(n)
			return
		}
		switch {
		case err == io.EOF:
			x.bodyErr = io.EOF
			stack[0] = 0
			return
		case err != nil:
			if ctx.Err() != nil {
				panic(fmt.Errorf("hostabi: input_read: %w", context.Cause(ctx)))
			}
			x.bodyErr = err
			stack[0] = resultFailed
			return
		}
	}
}

// responseStart: ABI.md "response_start".
func responseStart(ctx context.Context, m api.Module, stack []uint64) {
	x := current(ctx)
	data := guestmem.Read(m.Memory(), uint32(stack[0]), uint32(stack[1]))
	if x.headersSent || x.refused != nil {
		stack[0] = resultFailed
		return
	}
	status, headers, err := DecodeStart(data)
	if err != nil {
		x.refused, x.pending = err, nil
		stack[0] = resultFailed
		return
	}
	x.pending = &pendingStart{status: status, headers: headers}
	stack[0] = 0
}

// responseWrite: ABI.md "response_write".
func responseWrite(ctx context.Context, m api.Module, stack []uint64) {
	x := current(ctx)
	data := guestmem.Read(m.Memory(), uint32(stack[0]), uint32(stack[1]))
	if x.pending == nil {
		stack[0] = resultFailed
		return
	}
	if !x.headersSent {
		if err := x.sendHeaders(); err != nil {
			stack[0] = writeFailed(ctx, err)
			return
		}
	}
	if len(data) > 0 {
		if err := x.Response.Write(data); err != nil {
			stack[0] = writeFailed(ctx, err)
			return
		}
	}
	stack[0] = 0
}

func writeFailed(ctx context.Context, err error) uint64 {
	if ctx.Err() != nil {
		panic(fmt.Errorf("hostabi: response_write: %w", context.Cause(ctx)))
	}
	return resultFailed
}

// MaxLogLine is the most bytes of one log_write message the host keeps; the
// rest is cut and counted in a marker (ABI.md "log_write"). 8 KiB holds a
// long traceback line or a request dump, and keeps a record within what
// log shippers take whole (rsyslog's default maxMessageSize is 8 KiB).
const MaxLogLine = 8 << 10

// logWrite: ABI.md "log_write".
func logWrite(ctx context.Context, m api.Module, stack []uint64) {
	level := int32(stack[0])
	msg := guestmem.Read(m.Memory(), uint32(stack[1]), uint32(stack[2]))
	if l, ok := ctx.Value(loggerKey{}).(Logger); ok && l != nil {
		l(level, TruncateLog(msg))
	}
}

// TruncateLog returns msg if it is at most MaxLogLine bytes long, else a new
// slice of its first MaxLogLine bytes at most (cut before a UTF-8 sequence,
// never inside one) and the marker "… [truncated N bytes]". Only the kept
// bytes are copied.
func TruncateLog(msg []byte) []byte {
	if len(msg) <= MaxLogLine {
		return msg
	}
	cut := MaxLogLine
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(msg[cut]); i++ {
		cut--
	}
	out := make([]byte, 0, cut+32)
	out = append(out, msg[:cut]...)
	return fmt.Appendf(out, "… [truncated %d bytes]", len(msg)-cut)
}

// Settle flushes what the Responder held back, if the response has
// started: call it before the guest waits or computes at length (ABI.md
// "response_write").
func (x *Exchange) Settle() {
	if x.headersSent {
		x.Response.Settle()
	}
}

// settle is Exchange.Settle for the request of ctx, if any.
func settle(ctx context.Context) {
	if x, _ := ctx.Value(exchangeKey{}).(*Exchange); x != nil {
		x.Settle()
	}
}

// interrupt: ABI.md "interrupt".
func interrupt(ctx context.Context, _ api.Module, _ []uint64) {
	settle(ctx)
	if it, ok := ctx.Value(interrupterKey{}).(Interrupter); ok {
		if err := it.CheckIn(); err != nil {
			panic(err)
		}
	}
}
