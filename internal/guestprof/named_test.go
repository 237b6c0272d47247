package guestprof

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
)

// stripNames returns module without its custom sections.
func stripNames(t *testing.T, module []byte) []byte {
	secs, err := wasmbin.Split(module)
	if err != nil {
		t.Fatal(err)
	}
	var kept []wasmbin.Section
	for _, s := range secs {
		if s.ID != wasmbin.SecCustom {
			kept = append(kept, s)
		}
	}
	return wasmbin.Join(kept)
}

// TestGraftNames gives a stripped module the names of another build of it
// and checks wazero then reads them; a build whose functions differ is
// refused.
func TestGraftNames(t *testing.T) {
	dir := t.TempDir()
	named, shipped, other := filepath.Join(dir, "named.wasm"), filepath.Join(dir, "shipped.wasm"), filepath.Join(dir, "other.wasm")
	for path, b := range map[string][]byte{
		named:   testModule(2),
		shipped: stripNames(t, testModule(3)), // other code, same functions
	} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := graftNames(shipped, named)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	m, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range m.ExportedFunctions() {
		names = append(names, f.Name())
	}
	if len(names) != 1 || names[0] != "main" {
		t.Errorf("exported functions named %v after grafting, want [main]", names)
	}
	if shippedB, _ := os.ReadFile(shipped); string(out[:len(shippedB)]) != string(shippedB) {
		t.Errorf("grafted module does not start with the shipped module's bytes")
	}

	// A module with a fourth function: the indices would not agree.
	secs, _ := wasmbin.Split(stripNames(t, testModule(3)))
	for i := range secs {
		if secs[i].ID == wasmbin.SecFunction {
			secs[i].Body = []byte{0x04, 0x00, 0x00, 0x00, 0x00}
		}
	}
	if err := os.WriteFile(other, wasmbin.Join(secs), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := graftNames(other, named); err == nil || !strings.Contains(err.Error(), "section 3") {
		t.Errorf("graft onto a module with other functions: %v, want an error naming section 3", err)
	}
}
