package interruptpass

import (
	"bytes"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
)

var opts = Options{ImportModule: "wsgi_host", ImportName: "interrupt", FlagExport: "flag"}

func sec(id byte, body ...byte) []byte {
	return append(append([]byte{id}, wasmbin.AppendU32(nil, uint32(len(body)))...), body...)
}

func str(s string) []byte { return append(wasmbin.AppendU32(nil, uint32(len(s))), s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// testModule has one imported function (imports[0]) and one defined function
// whose body is code, a memory, and a global "flag" = i32.const flagAddr.
func testModule(importName string, flagAddr int32, code []byte) []byte {
	body := cat([]byte{0x00}, code, []byte{0x0b}) // no locals
	return cat(
		[]byte("\x00asm\x01\x00\x00\x00"),
		sec(1, 0x02, 0x60, 0x00, 0x00, 0x60, 0x01, 0x7f, 0x01, 0x7f), // () -> (), (i32) -> i32
		sec(2, cat([]byte{0x01}, str("wsgi_host"), str(importName), []byte{0x00, 0x00})...),
		sec(3, 0x01, 0x01),
		sec(5, 0x01, 0x00, 0x01),
		sec(6, cat([]byte{0x01, 0x7f, 0x00, 0x41}, wasmbin.AppendS32(nil, flagAddr), []byte{0x0b})...),
		sec(7, cat([]byte{0x01}, str("flag"), []byte{0x03, 0x00})...),
		sec(10, cat([]byte{0x01}, wasmbin.AppendU32(nil, uint32(len(body))), body)...),
	)
}

// countdown: loop { local.get 0; i32.const 1; i32.sub; local.tee 0; br_if 0 }; local.get 0
var countdown = []byte{
	0x03, 0x40, // loop
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00,
	0x0b,
	0x02, 0x40, 0x03, 0x40, 0x0b, 0x0b, // block { loop {} }
	0x20, 0x00,
}

func TestRewriteInsertsCheckAtLoopHeads(t *testing.T) {
	in := testModule("interrupt", 2048, countdown)
	out, st, err := Rewrite(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Loops != 2 || st.Functions != 1 || st.FlagAddr != 2048 || st.FuncIndex != 0 {
		t.Fatalf("stats %+v", st)
	}
	check := checkSequence(2048, 0)
	if n := bytes.Count(out, append([]byte{0x03, 0x40}, check...)); n != 2 {
		t.Fatalf("found %d loop heads followed by the check, want 2", n)
	}
	if len(out) != len(in)+2*len(check) {
		t.Fatalf("output grew by %d bytes, want %d", len(out)-len(in), 2*len(check))
	}
	// The output is a valid module for the pass again: every size was fixed up.
	if _, st2, err := Rewrite(out, opts); err != nil || st2.Loops != 2 {
		t.Fatalf("re-reading the output: %v, %+v", err, st2)
	}
}

func TestRewriteSkipsImmediatesThatLookLikeLoop(t *testing.T) {
	// i32.const 3 (byte 0x03 inside an immediate), drop; then a real loop.
	code := []byte{0x41, 0x03, 0x1a, 0x42, 0x83, 0x06, 0x1a, 0x03, 0x40, 0x0b, 0x20, 0x00}
	_, st, err := Rewrite(testModule("interrupt", 16, code), opts)
	if err != nil || st.Loops != 1 {
		t.Fatalf("err %v, loops %d, want 1", err, st.Loops)
	}
}

func TestRewriteErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		module []byte
		want   string
	}{
		"not wasm":       {[]byte("hello world"), "not a WebAssembly module"},
		"missing import": {testModule("other", 16, countdown), "does not import wsgi_host.interrupt"},
		"unaligned flag": {testModule("interrupt", 18, countdown), "not 4-byte aligned"},
		"simd":           {testModule("interrupt", 16, []byte{0xfd, 0x0c, 0x1a, 0x20, 0x00}), "unsupported opcode 0xfd"},
		"truncated":      {testModule("interrupt", 16, countdown)[:60], "unexpected end"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Rewrite(tc.module, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	mod := testModule("interrupt", 16, countdown)
	if _, _, err := Rewrite(mod, Options{ImportModule: "wsgi_host", ImportName: "interrupt", FlagExport: "nope"}); err == nil {
		t.Fatal("missing flag export accepted")
	}
}

func FuzzRewrite(f *testing.F) {
	f.Add(testModule("interrupt", 2048, countdown))
	f.Fuzz(func(t *testing.T, module []byte) {
		out, st, err := Rewrite(module, opts) // must never panic
		if err == nil {
			if _, st2, err := Rewrite(out, opts); err != nil || st2.Loops != st.Loops {
				t.Fatalf("rewritten module does not re-read: %v", err)
			}
		}
	})
}
