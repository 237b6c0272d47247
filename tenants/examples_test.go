package tenants_test

import (
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

// TestExampleTenantsLoad keeps examples/tenants valid.
func TestExampleTenantsLoad(t *testing.T) {
	for _, name := range []string{"hello", "flask", "bottle", "django", "notes-pg"} {
		tn, err := tenants.Load("../examples/tenants/"+name, policies.DefaultCeiling)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tn.Name != name {
			t.Fatalf("name %q", tn.Name)
		}
	}
}
