package hostabi

import (
	"fmt"
	"maps"
	"slices"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Signature is a function type as ABI.md writes it.
type Signature struct {
	Params, Results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
	// GuestExports are the reactor's required function exports.
	GuestExports = map[string]Signature{
		ExportInitialize: {},
		ExportVersion:    {Results: []api.ValueType{i32}},
		ExportInit:       {Results: []api.ValueType{i32}},
		ExportInitBase:   {Results: []api.ValueType{i32}},
		ExportInitApp:    {Results: []api.ValueType{i32}},
		ExportHandle:     {Results: []api.ValueType{i32}},
		ExportPoll:       {},

		ExportBeforeSnapshot: {Results: []api.ValueType{i32}},
		ExportAfterRestore:   {Results: []api.ValueType{i32}},
	}
	// HostImports are the functions of the wsgi_host module.
	HostImports = map[string]Signature{
		FuncRequestEnviron: {Params: []api.ValueType{i32, i32}, Results: []api.ValueType{i32}},
		FuncInputRead:      {Params: []api.ValueType{i32, i32}, Results: []api.ValueType{i32}},
		FuncResponseStart:  {Params: []api.ValueType{i32, i32}, Results: []api.ValueType{i32}},
		FuncResponseWrite:  {Params: []api.ValueType{i32, i32}, Results: []api.ValueType{i32}},
		FuncLogWrite:       {Params: []api.ValueType{i32, i32, i32}},
		FuncInterrupt:      {},

		FuncNetConnect:   {Params: []api.ValueType{i32, i32, i32, i32}, Results: []api.ValueType{i32}},
		FuncNetSend:      {Params: []api.ValueType{i32, i32, i32, i32}, Results: []api.ValueType{i32}},
		FuncNetRecv:      {Params: []api.ValueType{i32, i32, i32, i32, i32}, Results: []api.ValueType{i32}},
		FuncNetPoll:      {Params: []api.ValueType{i32, i32, i32}, Results: []api.ValueType{i32}},
		FuncNetShutdown:  {Params: []api.ValueType{i32, i32}, Results: []api.ValueType{i32}},
		FuncNetClose:     {Params: []api.ValueType{i32}, Results: []api.ValueType{i32}},
		FuncNetInfo:      {Params: []api.ValueType{i32, i32, i32, i32}, Results: []api.ValueType{i32}},
		FuncNetTLS:       {Params: []api.ValueType{i32, i32, i32, i32}, Results: []api.ValueType{i32}},
		FuncNetLastError: {Params: []api.ValueType{i32, i32}, Results: []api.ValueType{i32}},

		FuncPBKDF2HMAC: {Params: []api.ValueType{i32, i32, i32, i32, i32, i32, i32, i32, i32}, Results: []api.ValueType{i32}},

		FuncFileLock: {Params: []api.ValueType{i64, i64, i32, i32, i64, i64}, Results: []api.ValueType{i32}},
	}
)

// Validate checks a compiled reactor against the ABI once, at load: no
// wsgi_host import this host does not define (or defines with another
// signature), every required export with its signature (in name order, so
// the error is always the same), and a memory export.
func Validate(m wazero.CompiledModule) error {
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != ModuleName {
			continue
		}
		want, ok := HostImports[name]
		if !ok {
			return fmt.Errorf("hostabi: reactor imports %s.%s, which this host does not define", mod, name)
		}
		if got := (Signature{f.ParamTypes(), f.ResultTypes()}); !got.equal(want) {
			return fmt.Errorf("hostabi: import %s.%s has signature %v, ABI.md says %v", mod, name, got, want)
		}
	}
	exports := m.ExportedFunctions()
	for _, name := range slices.Sorted(maps.Keys(GuestExports)) {
		want := GuestExports[name]
		f, ok := exports[name]
		if !ok {
			return fmt.Errorf("hostabi: reactor module lacks export %q (ABI.md \"Guest exports\")", name)
		}
		if got := (Signature{f.ParamTypes(), f.ResultTypes()}); !got.equal(want) {
			return fmt.Errorf("hostabi: export %q has signature %v, ABI.md says %v", name, got, want)
		}
	}
	if len(m.ExportedMemories()) == 0 {
		return fmt.Errorf("hostabi: reactor module exports no memory")
	}
	return nil
}

func (s Signature) equal(o Signature) bool {
	return slices.Equal(s.Params, o.Params) && slices.Equal(s.Results, o.Results)
}

// String renders the signature in ABI.md's WAT form, e.g.
// "(param i32) (param i32) (result i32)".
func (s Signature) String() string {
	out := ""
	for _, p := range s.Params {
		out += " (param " + api.ValueTypeName(p) + ")"
	}
	for _, r := range s.Results {
		out += " (result " + api.ValueTypeName(r) + ")"
	}
	if out == "" {
		return ""
	}
	return out[1:]
}
