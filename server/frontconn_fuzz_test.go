package server

import (
	"bytes"
	"io"
	"testing"
)

// FuzzFramingConn feeds any byte stream to the front's framing check, read
// in pieces of two sizes: it never panics, passes on a prefix of the
// stream and nothing else, passes all of it when it finds no problem, and
// decides the same whatever the piece size (a request split across reads
// is judged as a whole).
func FuzzFramingConn(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
	} {
		f.Add([]byte(seed), uint8(1))
	}
	f.Fuzz(func(t *testing.T, raw []byte, piece uint8) {
		read := func(n int) ([]byte, string) {
			fc := &framingConn{Conn: &pieceConn{r: bytes.NewReader(raw), n: n}}
			got, err := io.ReadAll(fc)
			if err != nil {
				t.Fatalf("read in pieces of %d: %v", n, err)
			}
			return got, fc.Problem()
		}
		small, problemSmall := read(int(piece%16) + 1)
		whole, problemWhole := read(1 << 16)
		for _, got := range [][]byte{small, whole} {
			if !bytes.HasPrefix(raw, got) {
				t.Fatalf("passed on %q, not a prefix of %q", got, raw)
			}
		}
		if (problemSmall == "") != (problemWhole == "") {
			t.Fatalf("the piece size changed the verdict: %q in small pieces, %q whole", problemSmall, problemWhole)
		}
		if problemWhole == "" && (len(whole) != len(raw) || len(small) != len(raw)) {
			t.Fatalf("no problem found, yet %d and %d of %d bytes passed on", len(small), len(whole), len(raw))
		}
	})
}
