package benchmarks

import (
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testservices"
)

// TestMain stops the servers that the outbound benchmark started.
func TestMain(m *testing.M) { testservices.Main(m) }
