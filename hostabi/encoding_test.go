package hostabi_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
)

// encodeStart is the guest's half of response_start: status and
// (name, value) pairs, each followed by NUL.
func encodeStart(status string, kv ...string) []byte {
	return []byte(strings.Join(append([]string{status}, kv...), "\x00") + "\x00")
}

// TestDecodeStart: what response_start accepts and, one case per rule of
// ABI.md "response_start", what it refuses.
func TestDecodeStart(t *testing.T) {
	ok := []struct {
		name    string
		data    []byte
		status  int
		headers []hostabi.Header
	}{
		{"plain", encodeStart("200 OK", "Content-Type", "text/plain"), 200,
			[]hostabi.Header{{"Content-Type", "text/plain"}}},
		{"no headers", encodeStart("404 Not Found"), 404, []hostabi.Header{}},
		{"tab and latin-1 in a value", encodeStart("599 Odd\treason", "X-V", "a\tb\xe9"), 599,
			[]hostabi.Header{{"X-V", "a\tb\xe9"}}},
		{"identical Content-Length folded", encodeStart("200 OK", "Content-Length", "5", "X-A", "1", "content-length", "5"), 200,
			[]hostabi.Header{{"Content-Length", "5"}, {"X-A", "1"}}},
		{"many Set-Cookie", encodeStart("302 Found", strings.Repeat("Set-Cookie\x00c=1; Path=/\x00", 99)+"Location", "/"), 302, nil},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			status, headers, err := hostabi.DecodeStart(tc.data)
			if err != nil || status != tc.status {
				t.Fatalf("DecodeStart = %d, %v; want %d", status, err, tc.status)
			}
			if tc.headers != nil {
				if diff := cmp.Diff(tc.headers, headers); diff != "" {
					t.Fatalf("headers (-want +got):\n%s", diff)
				}
			}
		})
	}

	refused := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "end in NUL"},
		{"no final NUL", []byte("200 OK"), "end in NUL"},
		{"name without value", encodeStart("200 OK", "X-A")[:len("200 OK\x00X-A\x00")], "without value"},
		{"status without reason", encodeStart("200"), "bad status"},
		{"status not digits", encodeStart("2x0 OK"), "bad status"},
		{"signed status", encodeStart("+20 OK"), "bad status"},
		{"100 Continue", encodeStart("100 Continue"), "outside 200-599"},
		{"101 Switching Protocols", encodeStart("101 Switching Protocols", "Upgrade", "websocket"), "outside 200-599"},
		{"199", encodeStart("199 Informational"), "outside 200-599"},
		{"600", encodeStart("600 Beyond"), "outside 200-599"},
		{"999", encodeStart("999 Beyond"), "outside 200-599"},
		{"control character in reason", encodeStart("200 O\x01K"), "bad status"},
		{"CR in value", encodeStart("200 OK", "X-A", "a\rInjected: 1"), "control character"},
		{"LF in value", encodeStart("200 OK", "X-A", "a\nInjected: 1"), "control character"},
		{"DEL in value", encodeStart("200 OK", "X-A", "a\x7f"), "control character"},
		{"escape in value", encodeStart("200 OK", "X-A", "\x1b[2J"), "control character"},
		{"bad name", encodeStart("200 OK", "X A", "1"), "bad header name"},
		{"empty name", encodeStart("200 OK", "", "1"), "bad header name"},
		{"hop-by-hop", encodeStart("200 OK", "Transfer-Encoding", "chunked"), "hop-by-hop"},
		{"Upgrade", encodeStart("200 OK", "upgrade", "h2c"), "hop-by-hop"},
		{"conflicting Content-Length", encodeStart("200 OK", "Content-Length", "5", "Content-Length", "50"), "conflicting Content-Length"},
		{"Content-Length with a sign", encodeStart("200 OK", "Content-Length", "-1"), "not a number"},
		{"Content-Length list", encodeStart("200 OK", "Content-Length", "5, 5"), "not a number"},
		{"Content-Length empty", encodeStart("200 OK", "Content-Length", ""), "not a number"},
		{"Content-Length over int64", encodeStart("200 OK", "Content-Length", "9999999999999999999"), "not a number"},
		{"too many headers", encodeStart("200 OK", strings.Split(strings.Repeat("X\x00y\x00", hostabi.MaxResponseHeaders+1), "\x00")[:2*(hostabi.MaxResponseHeaders+1)]...),
			fmt.Sprintf("%d headers, over the limit of %d", hostabi.MaxResponseHeaders+1, hostabi.MaxResponseHeaders)},
		{"too large", encodeStart("200 OK", "X-Big", strings.Repeat("v", hostabi.MaxResponseStart)), "over the limit of 65536"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			status, headers, err := hostabi.DecodeStart(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeStart = %d, %v, %v; want an error mentioning %q", status, headers, err, tc.want)
			}
		})
	}
}

// TestDecodeStartLimitsExact: the limits are inclusive.
func TestDecodeStartLimitsExact(t *testing.T) {
	var kv []string
	for i := 0; i < hostabi.MaxResponseHeaders; i++ {
		kv = append(kv, "Set-Cookie", fmt.Sprintf("c%d=1", i))
	}
	if _, headers, err := hostabi.DecodeStart(encodeStart("200 OK", kv...)); err != nil || len(headers) != hostabi.MaxResponseHeaders {
		t.Fatalf("%d headers: %d decoded, %v", hostabi.MaxResponseHeaders, len(headers), err)
	}
	full := encodeStart("200 OK", "X-Big", "")
	full = encodeStart("200 OK", "X-Big", strings.Repeat("v", hostabi.MaxResponseStart-len(full)))
	if _, _, err := hostabi.DecodeStart(full); len(full) != hostabi.MaxResponseStart || err != nil {
		t.Fatalf("%d bytes: %v", len(full), err)
	}
}

// TestDecodeStartHugeIsCheap: 2,000,000 headers (24 MB) are refused on
// their length, before any split or copy: the host allocates almost
// nothing and takes no time.
func TestDecodeStartHugeIsCheap(t *testing.T) {
	huge := append([]byte("200 OK\x00"), bytes.Repeat([]byte("X-Header-N\x00v\x00"), 2_000_000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := hostabi.DecodeStart(huge)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("DecodeStart of %d bytes: %v", len(huge), err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("refusing %d bytes allocated %d bytes", len(huge), n)
	}
	// Under the size limit, the count is checked before anything is split.
	many := append([]byte("200 OK\x00"), bytes.Repeat([]byte("X\x00\x00"), (hostabi.MaxResponseStart-8)/3)...)
	runtime.ReadMemStats(&before)
	_, _, err = hostabi.DecodeStart(many)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "headers, over the limit") {
		t.Fatalf("DecodeStart of %d empty headers: %v", len(many)/3, err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<10 {
		t.Fatalf("refusing %d headers allocated %d bytes", len(many)/3, n)
	}
}

// TestTruncateLog: a message at the limit passes as it is; a longer one is
// cut at a UTF-8 boundary and says how much was cut.
func TestTruncateLog(t *testing.T) {
	short := bytes.Repeat([]byte("a"), hostabi.MaxLogLine)
	if got := hostabi.TruncateLog(short); &got[0] != &short[0] || len(got) != len(short) {
		t.Fatal("a message at the limit was copied or changed")
	}
	long := bytes.Repeat([]byte("x"), 50_000_000)
	got := string(hostabi.TruncateLog(long))
	want := strings.Repeat("x", hostabi.MaxLogLine) + fmt.Sprintf("… [truncated %d bytes]", 50_000_000-hostabi.MaxLogLine)
	if got != want {
		t.Fatalf("truncated to %d bytes ending %q", len(got), got[len(got)-40:])
	}
	// "é" is two bytes; the limit falls inside one of them.
	accents := append([]byte("a"), bytes.Repeat([]byte("é"), hostabi.MaxLogLine)...)
	got = string(hostabi.TruncateLog(accents))
	kept, _, _ := strings.Cut(got, "…")
	if !utf8.ValidString(got) || len(kept) != hostabi.MaxLogLine-1 ||
		!strings.HasSuffix(got, fmt.Sprintf("[truncated %d bytes]", len(accents)-len(kept))) {
		t.Fatalf("cut inside a rune: kept %d bytes, valid %v, ends %q", len(kept), utf8.ValidString(got), got[len(got)-30:])
	}
}
