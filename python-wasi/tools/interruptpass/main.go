// Command interruptpass instruments an interpreter module (the reactor and
// the command form) for cheap interruption (see internal/interruptpass). The
// recipe's link.sh runs it:
//
//	go run ./python-wasi/tools/interruptpass IN.wasm OUT.wasm
package main

import (
	"fmt"
	"os"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/internal/interruptpass"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: interruptpass IN.wasm OUT.wasm")
		os.Exit(2)
	}
	in, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, st, err := interruptpass.Rewrite(in, interruptpass.Options{
		ImportModule: hostabi.ModuleName,
		ImportName:   hostabi.FuncInterrupt,
		FlagExport:   hostabi.ExportInterruptFlag,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[2], out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "interruptpass: %d checks in %d functions (flag at %d, host function %d), %d -> %d bytes\n",
		st.Loops, st.Functions, st.FlagAddr, st.FuncIndex, len(in), len(out))
}
