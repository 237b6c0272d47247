// Package testinterp gives tests the built interpreter. Under CI (CI=true) a
// missing interpreter fails the test, since the test command builds it;
// elsewhere the test is skipped with the command that builds it.
package testinterp

import (
	"os"
	"testing"

	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
)

// Require returns the interpreter or ends the test.
func Require(tb testing.TB) pythonwasi.Interpreter {
	tb.Helper()
	in, err := pythonwasi.Locate("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("interpreter missing under CI: %v", err)
		}
		tb.Skipf("interpreter not built (run `make python-wasi`): %v", err)
	}
	return in
}
