package hostabi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// section appends a wasm section with its size.
func section(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }

// TestValidateLoadFailures: one module per way a reactor can be unfit, each
// refused at load with an error that names what is wrong.
func TestValidateLoadFailures(t *testing.T) {
	header := []byte("\x00asm\x01\x00\x00\x00")
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	voidFunc := cat([]byte{0x01, 0x60, 0x00, 0x00}) // one type: () -> ()
	cases := map[string]struct {
		module []byte
		want   string
	}{
		"no exports": {header, `lacks export "_initialize"`},
		// All names present, each a () -> () function: the first checked with
		// another signature is wsgi_abi_version.
		"wrong signature": {cat(header,
			section(1, voidFunc...),
			section(3, 0x01, 0x00),
			section(7, cat([]byte{0x04}, name("_initialize"), []byte{0x00, 0x00}, name("wsgi_abi_version"), []byte{0x00, 0x00},
				name("wsgi_init"), []byte{0x00, 0x00}, name("wsgi_handle"), []byte{0x00, 0x00})...),
			section(10, 0x01, 0x02, 0x00, 0x0b),
		), `export "wsgi_abi_version" has signature`},
		"unknown host import": {cat(header,
			section(1, voidFunc...),
			section(2, cat([]byte{0x01}, name("wsgi_host"), name("teleport"), []byte{0x00, 0x00})...),
		), "wsgi_host.teleport, which this host does not define"},
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			m, err := r.CompileModule(ctx, tc.module)
			if err != nil {
				t.Fatalf("test module does not compile: %v", err)
			}
			err = hostabi.Validate(m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := r.CompileModule(ctx, []byte("not wasm")); err == nil {
		t.Fatal("a non-module compiled")
	}
}
