package guestprof

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/tetratelabs/wazero"

	"github.com/wsgi-wasm/wsgi-wasm/internal/wasmbin"
)

func sec(id byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	return append(append([]byte{id}, wasmbin.AppendU32(nil, uint32(len(b)))...), b...)
}

func str(s string) []byte { return append(wasmbin.AppendU32(nil, uint32(len(s))), s...) }

// spin is a body that counts n down to 0 in a loop and calls nothing.
func spin(n int32) []byte {
	code := []byte{0x01, 0x01, 0x7f} // one local i32
	code = append(code, 0x41)        // i32.const n
	code = wasmbin.AppendS32(code, n)
	code = append(code,
		0x21, 0x00, // local.set 0
		0x03, 0x40, // loop
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, // local.get 0; i32.const 1; i32.sub; local.tee 0
		0x0d, 0x00, // br_if 0
		0x0b, 0x0b) // end loop, end func
	return append(wasmbin.AppendU32(nil, uint32(len(code))), code...)
}

// testModule: hot (a loop of 10 M), cold (1 M), main calls hot then cold
// rounds times; named by a name section.
func testModule(rounds int) []byte {
	body := []byte{0x00}
	for i := 0; i < rounds; i++ {
		body = append(body, 0x10, 0x00, 0x10, 0x01) // call hot; call cold
	}
	body = append(body, 0x0b)
	mainBody := append(wasmbin.AppendU32(nil, uint32(len(body))), body...)
	names := append([]byte{0x03}, bytes.Join([][]byte{{0x00}, str("hot"), {0x01}, str("cold"), {0x02}, str("main")}, nil)...)
	return bytes.Join([][]byte{
		wasmbin.Magic,
		sec(1, []byte{0x01, 0x60, 0x00, 0x00}),                // type 0: () -> ()
		sec(3, []byte{0x03, 0x00, 0x00, 0x00}),                // three functions of type 0
		sec(7, []byte{0x01}, str("main"), []byte{0x00, 0x02}), // export main
		sec(10, []byte{0x03}, spin(10_000_000), spin(1_000_000), mainBody),
		sec(0, str("name"), []byte{0x01}, wasmbin.AppendU32(nil, uint32(len(names))), names),
	}, nil)
}

// TestAttributesLeafTime runs a module whose main calls a leaf loop ten
// times longer than another and checks the profile says so: the long loop's
// own (flat) share near 10/11, the short one's near 1/11, main's flat share
// near zero and its cumulative share all. It also checks that the written
// profile parses as pprof reads it.
func TestAttributesLeafTime(t *testing.T) {
	ctx := context.Background()
	p := New(0)
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(p.Context(ctx), testModule(30))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	for i := 0; i < 3; i++ {
		if _, err := mod.ExportedFunction("main").Call(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.Stop()
	st := p.Stats()
	if st.Samples < 50 {
		t.Fatalf("only %d samples in %v", st.Samples, st.Wall)
	}
	if want := int64(3 * (1 + 2*30) * 2); st.Events != want {
		t.Errorf("%d listener events, want %d (an entry and a return per call)", st.Events, want)
	}
	var buf bytes.Buffer
	if _, err := p.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatalf("written profile does not parse: %v", err)
	}
	flat, cum := Top(prof, 0, nil)
	share := map[string]Row{}
	for _, r := range flat {
		share[r.Name] = r
	}
	t.Logf("%d samples in %v: hot %.3f, cold %.3f, main flat %.3f cum %.3f (cum top %s)",
		st.Samples, st.Wall, share["hot"].Flat, share["cold"].Flat, share["main"].Flat, share["main"].Cum, cum[0].Name)
	if h, c := share["hot"].Flat, share["cold"].Flat; h < 0.75 || c <= 0 || h < 4*c {
		t.Errorf("hot %.3f, cold %.3f of the samples; want about 0.91 and 0.09", h, c)
	}
	if corr := p.FlatCorrected(0, 1, nil); len(corr) != 1 || corr[0].Name != "hot" || corr[0].Flat != share["hot"].Flat {
		t.Errorf("FlatCorrected with no cost per event: %+v, want hot at %.3f as Top says", corr, share["hot"].Flat)
	}
	if rest, _ := Top(prof, 0, func(name string) bool { return name == "hot" }); len(rest) == 0 || rest[0].Name != "cold" || rest[0].Flat < 0.8 {
		t.Errorf("Top without hot's samples: %+v, want cold first, near 1 (main's own few samples aside)", rest)
	}
	if share["main"].Flat > 0.05 || share["main"].Cum < 0.99 || cum[0].Name != "main" {
		t.Errorf("main: flat %.3f (want about 0), cum %.3f (want 1), first by cum %q", share["main"].Flat, share["main"].Cum, cum[0].Name)
	}
}
