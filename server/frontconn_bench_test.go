package server

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// BenchmarkFramingConn is what the front's framing check costs a typical
// keep-alive connection: 100 GET requests with browser-like headers, read
// as net/http reads them (4 KiB at a time). TestFramingConn checks what it
// computes.
func BenchmarkFramingConn(b *testing.B) {
	head := "GET /page/42?x=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n" +
		"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\nConnection: keep-alive\r\n\r\n"
	stream := []byte(strings.Repeat(head, 100))
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		fc := &framingConn{Conn: &pieceConn{r: bytes.NewReader(stream), n: len(buf)}}
		for {
			if _, err := fc.Read(buf); err == io.EOF {
				break
			}
		}
		if fc.Problem() != "" {
			b.Fatal(fc.Problem())
		}
	}
}
