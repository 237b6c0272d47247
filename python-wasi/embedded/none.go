//go:build !embed

// Package embedded carries a built interpreter inside the wsgi-wasm binary
// when built with the "embed" tag (`make build`); without it, it carries
// nothing and the interpreter is found in the recipe's cache.
package embedded

import "errors"

// Available reports whether this binary carries an interpreter.
const Available = false

// Extract fails: this binary carries no interpreter.
func Extract(string) (string, error) {
	return "", errors.New("embedded: this binary was built without an interpreter (make build)")
}
