package hostabi_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// docTable returns the rows of the first table after the heading, as
// name -> WAT signature, with the name taken from the first column and the
// signature from the column holding "(func".
func docTable(t *testing.T, doc, heading string) map[string]string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("ABI.md has no heading %q", heading)
	}
	rows := map[string]string{}
	inTable := false
	for _, line := range strings.Split(doc[i+len(heading)+2:], "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if name == "" || strings.HasPrefix(name, "---") || name == "export" || name == "import" {
			continue
		}
		for _, c := range cells[1:] {
			c = strings.Trim(strings.TrimSpace(c), "`")
			if strings.HasPrefix(c, "(func") || c == "memory" {
				rows[name] = c
			}
		}
	}
	return rows
}

var funcSig = regexp.MustCompile(`\((param|result)(?: \$\w+)? (i32|i64|f32|f64)\)`)

// normalise turns "(func (param $buf i32) (result i32))" into
// "(param i32) (result i32)", the form Signature.String prints.
func normalise(wat string) string {
	var parts []string
	for _, m := range funcSig.FindAllStringSubmatch(wat, -1) {
		parts = append(parts, "("+m[1]+" "+m[2]+")")
	}
	return strings.Join(parts, " ")
}

func readDoc(t *testing.T) string {
	b, err := os.ReadFile("ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sigs(defs map[string]api.FunctionDefinition) map[string]string {
	out := map[string]string{}
	for name, d := range defs {
		out[name] = hostabi.Signature{Params: d.ParamTypes(), Results: d.ResultTypes()}.String()
	}
	return out
}

func docSigs(rows map[string]string) map[string]string {
	out := map[string]string{}
	for name, wat := range rows {
		if wat != "memory" {
			out[name] = normalise(wat)
		}
	}
	return out
}

// TestDocMatchesHostFunctions compares ABI.md's import table with the
// functions hostabi.Instantiate really defines.
func TestDocMatchesHostFunctions(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if err := hostabi.Instantiate(ctx, r); err != nil {
		t.Fatal(err)
	}
	defined := sigs(r.Module(hostabi.ModuleName).ExportedFunctionDefinitions())
	documented := docSigs(docTable(t, readDoc(t), "## Host imports (module `wsgi_host`)"))
	if diff := cmp.Diff(documented, defined); diff != "" {
		t.Fatalf("ABI.md (-) vs host module (+):\n%s", diff)
	}
	declared := map[string]string{}
	for name, s := range hostabi.HostImports {
		declared[name] = s.String()
	}
	if diff := cmp.Diff(documented, declared); diff != "" {
		t.Fatalf("ABI.md (-) vs hostabi.HostImports (+):\n%s", diff)
	}
}

// TestDocMatchesReactorModule compares ABI.md with the imports and exports
// of the built python-reactor.wasm.
func TestDocMatchesReactorModule(t *testing.T) {
	in := testinterp.Require(t)
	bin, err := os.ReadFile(in.ReactorModule())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(sandbox.DefaultCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
	defer r.Close(ctx)
	m, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	doc := readDoc(t)

	exportRows := docTable(t, doc, "## Guest exports")
	if exportRows["memory"] != "memory" || len(m.ExportedMemories()) == 0 {
		t.Fatal("memory export missing from ABI.md or module")
	}
	if !strings.Contains(doc, "| `"+hostabi.ExportInterruptFlag+"` | `(global i32)` |") {
		t.Fatalf("ABI.md does not list the %s global export", hostabi.ExportInterruptFlag)
	}
	builtExports := map[string]string{}
	for name, d := range m.ExportedFunctions() {
		if _, documented := exportRows[name]; documented {
			builtExports[name] = sigs(map[string]api.FunctionDefinition{name: d})[name]
		}
	}
	if diff := cmp.Diff(docSigs(exportRows), builtExports); diff != "" {
		t.Fatalf("ABI.md exports (-) vs python-reactor.wasm (+):\n%s", diff)
	}

	builtImports := map[string]string{}
	for _, d := range m.ImportedFunctions() {
		if mod, name, _ := d.Import(); mod == hostabi.ModuleName {
			builtImports[name] = sigs(map[string]api.FunctionDefinition{name: d})[name]
		}
	}
	if diff := cmp.Diff(docSigs(docTable(t, doc, "## Host imports (module `wsgi_host`)")), builtImports); diff != "" {
		t.Fatalf("ABI.md imports (-) vs python-reactor.wasm (+):\n%s", diff)
	}
	if err := hostabi.Validate(m); err != nil {
		t.Fatal(err)
	}
}

// TestDocResultCodes checks that the result tables list exactly the codes
// the Go constants define.
func TestDocResultCodes(t *testing.T) {
	doc := readDoc(t)
	codes := func(heading string) []string {
		i := strings.Index(doc, heading)
		if i < 0 {
			t.Fatalf("no %q in ABI.md", heading)
		}
		var out []string
		for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(doc[i:], -1) {
			if len(out) > 0 && m[1] <= out[len(out)-1] {
				break
			}
			out = append(out, m[1])
		}
		return out
	}
	snap := []string{"0", "1", "2", "3"}
	if diff := cmp.Diff(snap[:4], []string{
		fmt.Sprint(hostabi.SnapshotOK), fmt.Sprint(hostabi.SnapshotFileOpen),
		fmt.Sprint(hostabi.SnapshotRaised), fmt.Sprint(hostabi.SnapshotNotReady)}); diff != "" {
		t.Errorf("snapshot result constants: %s", diff)
	}
	if diff := cmp.Diff(snap, codes("### `wsgi_before_snapshot`")); diff != "" {
		t.Errorf("wsgi_before_snapshot results: %s", diff)
	}
	if diff := cmp.Diff([]string{"0", "2", "3"}, codes("### `wsgi_after_restore`")); diff != "" {
		t.Errorf("wsgi_after_restore results: %s", diff)
	}
	if diff := cmp.Diff([]string{"0", "1", "2", "3"}, codes("### `wsgi_init`")); diff != "" {
		t.Errorf("wsgi_init results: %s", diff)
	}
	want := []int{hostabi.HandleOK, hostabi.HandleAppError, hostabi.HandleClientGone, hostabi.HandleNotReady, hostabi.HandleReplace}
	var wantS []string
	for _, c := range want {
		wantS = append(wantS, string(rune('0'+c)))
	}
	if diff := cmp.Diff(wantS, codes("### `wsgi_handle`")); diff != "" {
		t.Errorf("wsgi_handle results: %s", diff)
	}
	if !strings.Contains(doc, fmt.Sprintf("`wsgi_abi_version` returns `%d`", hostabi.Version)) {
		t.Errorf("ABI.md's version and hostabi.Version disagree")
	}
}

// docSection returns ABI.md from the heading to the next heading.
func docSection(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("ABI.md has no heading %q", heading)
	}
	rest := doc[i+len(heading)+2:]
	if j := strings.Index(rest, "\n#"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// TestDocLimits: the limits ABI.md states are the ones the host applies.
func TestDocLimits(t *testing.T) {
	doc := readDoc(t)
	start := docSection(t, doc, "### `response_start`")
	for _, want := range []string{
		fmt.Sprintf("| the encoding | at most %d bytes,", hostabi.MaxResponseStart),
		fmt.Sprintf("| headers | at most %d |", hostabi.MaxResponseHeaders),
		"three digits from 200 to 599",
		"502 Bad Gateway",
	} {
		if !strings.Contains(start, want) {
			t.Errorf("ABI.md \"response_start\" does not say %q", want)
		}
	}
	if want := fmt.Sprintf("at most the first %d bytes of a message", hostabi.MaxLogLine); !strings.Contains(docSection(t, doc, "### `log_write`"), want) {
		t.Errorf("ABI.md \"log_write\" does not say %q", want)
	}
	pbkdf2 := docSection(t, doc, "### `pbkdf2_hmac`")
	for _, want := range []string{
		fmt.Sprintf("blocks (`dklen` ÷ the digest size, rounded up) is over %d", hostabi.MaxPBKDF2Work),
		fmt.Sprintf("or the salt is over %d bytes", hostabi.MaxPBKDF2Input),
		fmt.Sprintf("(at most %d bytes each)", hostabi.MaxPBKDF2Input),
		fmt.Sprintf("the `dklen` bytes of the key (at most %d)", hostabi.MaxPBKDF2KeyLen),
	} {
		if !strings.Contains(strings.Join(strings.Fields(pbkdf2), " "), want) {
			t.Errorf("ABI.md \"pbkdf2_hmac\" does not say %q", want)
		}
	}
}
