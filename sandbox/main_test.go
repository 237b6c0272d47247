package sandbox_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaks a goroutine: the host must
// not leak one because of a guest. The epoch thread is C, not a goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
