// Package tomlfile decodes the project's configuration files (tenant.toml,
// the server config file) strictly: unknown keys are errors, and every error
// names the file, the line when it is known, the key and the reason.
package tomlfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is a problem with one configuration file.
type Error struct {
	File, Key, Reason string
	Line              int // 0 when unknown
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Reason)
	}
	return fmt.Sprintf("%s: %s", where, e.Reason)
}

// typeError is how BurntSushi/toml words a value of the wrong type; it has
// no structured form, so the line and key are read from the message.
var typeError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// Decode reads path into v. Keys v has no field for are an *Error naming
// the first of them and its line; so are syntax errors and values of the
// wrong type.
func Decode(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return DecodeData(path, data, v)
}

// DecodeData is Decode of a file already read (data), named path in
// errors.
func DecodeData(path string, data []byte, v any) error {
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Reason: pe.Message}
		}
		if m := typeError.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &Error{File: path, Line: line, Key: m[2], Reason: m[3]}
		}
		return &Error{File: path, Reason: err.Error()}
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		key := undecoded[0]
		return &Error{File: path, Line: keyLine(data, strings.Join(key, ".")), Key: key.String(), Reason: "unknown key"}
	}
	return nil
}

// Line is the line of the file at path that defines key (its parts joined
// by dots, unquoted: "policy.memory_mb"), or 0 when it is not there. It
// lets a validation error after decoding point at its line.
func Line(path, key string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return keyLine(data, key)
}

// LineIn is Line of a file already read.
func LineIn(data []byte, key string) int { return keyLine(data, key) }

// keyLine finds the line that defines want (a table header or a key = value
// line, dotted or quoted keys included), or 0. BurntSushi/toml keeps key
// positions to itself, so this reads the file once more, line by line.
func keyLine(data []byte, want string) int {
	var table []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "["):
			header := strings.Trim(line[:strings.LastIndexByte(line, ']')+1], "[]")
			table = splitKey(header)
			if strings.Join(table, ".") == want {
				return n
			}
		case strings.Contains(line, "=") && !strings.HasPrefix(line, "#"):
			k, _, _ := strings.Cut(line, "=")
			full := strings.Join(append(append([]string{}, table...), splitKey(k)...), ".")
			if full == want || strings.HasPrefix(full, want+".") {
				return n
			}
		}
	}
	return 0
}

// splitKey splits a dotted TOML key, with quoted parts, into its parts.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	quote := rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote = r
		case r == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case r != ' ' && r != '\t':
			cur.WriteRune(r)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// Duration is a TOML string such as "30s" or "5m" (Go's time.ParseDuration);
// a bare number is an error rather than nanoseconds.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like \"30s\": %w", err)
	}
	*d = Duration(v)
	return nil
}
