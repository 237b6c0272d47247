package pool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// The failures a request can end in, besides a trap or exit of the guest
// (an error of the sandbox, *sandbox.ExitError for an exit) and a passed
// deadline (context.DeadlineExceeded or sandbox.ErrDeadline). Status maps
// each to the status the client gets.
var (
	// ErrQueueFull: every instance is busy and the wait queue is full.
	ErrQueueFull = errors.New("pool: too many requests waiting for an instance")
	// ErrPoolClosed: the pool was closed (its tenant retired or evicted).
	ErrPoolClosed = errors.New("pool: pool closed")
	// ErrNoInstance: no instance could start (the app fails to import);
	// the start's error is wrapped too.
	ErrNoInstance = errors.New("pool: no instance could start")
	// ErrAppException: the app raised, or returned, without a response.
	ErrAppException = errors.New("pool: the app failed without a response")
	// ErrBodyTooLarge: the request body is over the tenant's limit, by its
	// Content-Length or as the app read it.
	ErrBodyTooLarge = errors.New("pool: request body over the limit")
	// ErrClientBody: the client sent a body shorter than it declared or a
	// malformed one, and the app failed on it.
	ErrClientBody = errors.New("pool: request body incomplete or malformed")
	// ErrRefused: the app's status and headers were refused (ABI.md
	// "response_start").
	ErrRefused = errors.New("pool: the app's response was refused")
	// ErrBadRequest: the request cannot be given to the app (its environ
	// does not encode).
	ErrBadRequest = errors.New("pool: request not representable as an environ")
)

// Status is the one place that decides the status of a failed request:
//
//	failure                                 status
//	body over the limit                     413
//	client body error, bad request          400
//	deadline (waiting, in the guest)        504
//	queue full, pool closed, no instance    503 (with Retry-After, see Fail)
//	app exception                           500
//	trap, exit, refused response, any other 502
//
// An error that wraps several is the first of them in this order.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrClientBody), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, sandbox.ErrDeadline):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrPoolClosed), errors.Is(err, ErrNoInstance):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrAppException):
		return http.StatusInternalServerError
	}
	return http.StatusBadGateway
}

// retryAfter is the Retry-After of a 503: a busy or starting pool may
// serve a second later.
const retryAfter = 1

// BackoffError is ErrNoInstance while the pool waits before starting its
// app again, after Err: a 503 whose Retry-After is the time left.
type BackoffError struct {
	Err   error     // why the last start failed
	Retry time.Time // when the pool tries again
}

func (e *BackoffError) Error() string {
	return fmt.Sprintf("%v: %v (next attempt in %s)", ErrNoInstance, e.Err, time.Until(e.Retry).Round(time.Second))
}

// Unwrap is ErrNoInstance and the cause, so Status reads either.
func (e *BackoffError) Unwrap() []error { return []error{ErrNoInstance, e.Err} }

// Fail answers the failure err with its Status and the status's text; a
// 503 says when to retry.
func Fail(w http.ResponseWriter, err error) {
	code := Status(err)
	if code == http.StatusServiceUnavailable {
		after := retryAfter
		var b *BackoffError
		if errors.As(err, &b) {
			after = max(retryAfter, int(time.Until(b.Retry).Seconds()+0.5))
		}
		w.Header().Set("Retry-After", strconv.Itoa(after))
	}
	http.Error(w, http.StatusText(code), code)
}
