package hostabi_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// FuzzDecodeStart: whatever a guest passes to response_start, DecodeStart
// either refuses it or returns what ABI.md "response_start" allows, and
// what it returns encodes back to the input (but for a folded repeat of
// Content-Length). Seeds: testdata/fuzz/FuzzDecodeStart.
func FuzzDecodeStart(f *testing.F) {
	f.Add(encodeStart("200 OK", "Content-Type", "text/plain", "Content-Length", "2"))
	f.Add(encodeStart("204 No Content", "Set-Cookie", "a=1", "Set-Cookie", "b=2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		status, headers, err := hostabi.DecodeStart(data)
		if err != nil {
			return
		}
		if len(data) > hostabi.MaxResponseStart || status < 200 || status > 599 || len(headers) > hostabi.MaxResponseHeaders {
			t.Fatalf("accepted %d bytes: status %d, %d headers", len(data), status, len(headers))
		}
		var lengths []string
		for _, h := range headers {
			if h.Name == "" || strings.ContainsAny(h.Name, " \t:\x00\r\n\x7f") {
				t.Fatalf("accepted header name %q", h.Name)
			}
			if strings.ContainsFunc(h.Value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
				t.Fatalf("accepted header value %q", h.Value)
			}
			switch strings.ToLower(h.Name) {
			case "content-length":
				lengths = append(lengths, h.Value)
			case "connection", "transfer-encoding", "upgrade", "te", "keep-alive", "trailers":
				t.Fatalf("accepted hop-by-hop header %q", h.Name)
			}
		}
		if len(lengths) > 1 || (len(lengths) == 1 && strings.Trim(lengths[0], "0123456789") != "") {
			t.Fatalf("accepted Content-Length %q", lengths)
		}
		fields := bytes.Split(data[:len(data)-1], []byte{0})
		repeats := 0 // Content-Length names past the first, which are folded
		for i := 1; i < len(fields); i += 2 {
			if bytes.EqualFold(fields[i], []byte("Content-Length")) && len(lengths) == 1 {
				repeats++
			}
		}
		repeats = max(repeats-1, 0)
		if len(headers) != len(fields)/2-repeats {
			t.Fatalf("%d headers decoded of %d, %d folded", len(headers), len(fields)/2, repeats)
		}
		again := append([]byte(nil), fields[0]...)
		for _, h := range headers {
			again = append(again, "\x00"+h.Name+"\x00"+h.Value...)
		}
		if again = append(again, 0); repeats == 0 && !bytes.Equal(again, data) {
			t.Fatalf("decoded %q from %q", again, data)
		}
	})
}

// FuzzEncodeEnviron: EncodeEnviron refuses exactly the pairs that hold a
// NUL, and its encoding splits back into the same pairs after dst.
func FuzzEncodeEnviron(f *testing.F) {
	f.Add("REQUEST_METHOD|GET|PATH_INFO|/a b|HTTP_X|\xe9")
	f.Add("K|v\x00v")
	f.Add("odd")
	f.Fuzz(func(t *testing.T, joined string) {
		pairs := strings.Split(joined, "|")
		pairs = pairs[:len(pairs)/2*2]
		enc, err := hostabi.EncodeEnviron([]byte("dst"), pairs...)
		hasNUL := slices.ContainsFunc(pairs, func(s string) bool { return strings.Contains(s, "\x00") })
		if (err != nil) != hasNUL {
			t.Fatalf("EncodeEnviron(%q): %v", pairs, err)
		}
		if err != nil {
			return
		}
		if !bytes.HasPrefix(enc, []byte("dst")) {
			t.Fatalf("dst lost: %q", enc)
		}
		body := string(enc[3:])
		if len(pairs) == 0 {
			if body != "" {
				t.Fatalf("no pairs encoded as %q", body)
			}
			return
		}
		if got := strings.Split(strings.TrimSuffix(body, "\x00"), "\x00"); !strings.HasSuffix(body, "\x00") || !slices.Equal(got, pairs) {
			t.Fatalf("EncodeEnviron(%q) = %q", pairs, body)
		}
	})
}
