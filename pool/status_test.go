package pool_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestStatus covers every row of the failure-to-status map, as the pool,
// the adapter and the server's body limit answer them (serve and run go
// through the same Fail).
func TestStatus(t *testing.T) {
	trap := errors.New("wasm error: unreachable")
	for _, tc := range []struct {
		failure    string
		err        error
		status     int
		retryAfter string
	}{
		{"queue full", pool.ErrQueueFull, 503, "1"},
		{"pool closed", pool.ErrPoolClosed, 503, "1"},
		{"no instance could start", fmt.Errorf("%w: %w", pool.ErrNoInstance, errors.New("import failed")), 503, "1"},
		{"no instance, backing off", &pool.BackoffError{Err: errors.New("import failed"), Retry: time.Now().Add(30 * time.Second)}, 503, "30"},
		{"no instance, pool closed meanwhile", fmt.Errorf("%w: %w", pool.ErrNoInstance, pool.ErrPoolClosed), 503, "1"},
		{"deadline while waiting", context.DeadlineExceeded, 504, ""},
		{"deadline in the guest", fmt.Errorf("%w: %w", sandbox.ErrDeadline, trap), 504, ""},
		{"an instance start past its deadline", fmt.Errorf("%w: %w", pool.ErrNoInstance, context.DeadlineExceeded), 504, ""},
		{"trap", trap, 502, ""},
		{"exit", &sandbox.ExitError{Code: 9}, 502, ""},
		{"refused response", fmt.Errorf("%w: %w", pool.ErrRefused, errors.New("status 99")), 502, ""},
		{"app exception", pool.ErrAppException, 500, ""},
		{"body over the limit", pool.ErrBodyTooLarge, 413, ""},
		{"client body error", pool.ErrClientBody, 400, ""},
		{"request without an environ", fmt.Errorf("%w: %w", pool.ErrBadRequest, errors.New("NUL in a header")), 400, ""},
	} {
		t.Run(tc.failure, func(t *testing.T) {
			if got := pool.Status(tc.err); got != tc.status {
				t.Errorf("Status = %d, want %d", got, tc.status)
			}
			rec := httptest.NewRecorder()
			pool.Fail(rec, tc.err)
			if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.retryAfter {
				t.Errorf("Fail answered %d with Retry-After %q, want %d with %q", rec.Code, rec.Header().Get("Retry-After"), tc.status, tc.retryAfter)
			}
		})
	}
}
