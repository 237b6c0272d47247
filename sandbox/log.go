package sandbox

import (
	"log/slog"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// GuestLog receives what a guest logs (hostabi/ABI.md "log_write"): its
// stdout, stderr, wsgi.errors, Python logging records and tracebacks, one
// call per record at the level the guest gave; a record may hold several
// lines (a traceback). msg is at most MaxLogLine bytes and a truncation
// marker, and is valid only during the call.
type GuestLog func(level slog.Level, msg []byte)

// MaxLogLine is the most bytes of one guest record the host keeps; the
// rest is cut and counted in a marker ("… [truncated N bytes]").
const MaxLogLine = hostabi.MaxLogLine

// guestLevel is the slog level of a log_write level; a level the ABI does
// not name is information.
func guestLevel(level int32) slog.Level {
	switch level {
	case hostabi.LogError:
		return slog.LevelError
	case hostabi.LogWarning:
		return slog.LevelWarn
	case hostabi.LogDebug:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// abi is l as the host functions call it; nil stays nil.
func (l GuestLog) abi() hostabi.Logger {
	if l == nil {
		return nil
	}
	return func(level int32, msg []byte) { l(guestLevel(level), msg) }
}
