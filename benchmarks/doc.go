// Package benchmarks holds the Go benchmarks of wsgi-wasm (testing.B) and
// the tests that keep their targets: the cost of interruption on a Flask
// request, and the host ABI path (environ in, bodies out). Run them with
//
//	go test ./benchmarks -run XXX -bench . -benchmem -count 10 | benchstat -
//
// RESULTS.md records the figures, written by `make bench-go`.
package benchmarks
