package pool_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// An engine runs the interpreter, a pool keeps instances of one app, and
// a Handler serves HTTP with them.
func Example() {
	interp, err := pythonwasi.Locate("") // the interpreter `make python-wasi` built
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	engine, err := sandbox.New(ctx, sandbox.Options{Interpreter: interp})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close(ctx)

	p := pool.New(engine, sandbox.AppConfig{App: "hello:hello", Dir: "../sandbox/testdata/apps"}, pool.Config{MaxInstances: 1})
	defer p.Close()
	srv := httptest.NewServer(&pool.Handler{Pool: p})
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/world")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status)
	fmt.Print(string(body))
	// Output:
	// 200 OK
	// Hello, /world
}
